"""Zip intake: a model's photos as one zip, read safely and unpacked into the normal upload layout."""

import io
import zipfile
from pathlib import Path

import pytest

from modelcrew_assets.intake.upload import UploadError
from modelcrew_assets.intake.zip_intake import ZipIntakeError, ZipLimits, read_model_zip, unpack_model_zip
from modelcrew_assets_tests.builders import jpeg_bytes, manifest_text, target_variants

LIMITS = ZipLimits()


def make_zip(entries: dict[str, bytes], encrypted: tuple[str, ...] = (), symlinks: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name in symlinks:
                info.external_attr = 0o120777 << 16
            archive.writestr(info, data)
        for info in archive.filelist:
            if info.filename in encrypted:
                # The central directory (what readers trust) is written at close from these infos.
                info.flag_bits |= 0x1
    return buffer.getvalue()


def model_entries(astronaut, targets=3, manifest=True, prefix=""):
    entries = {f"{prefix}model.toml": manifest_text().encode()} if manifest else {}
    entries[f"{prefix}face/face.jpg"] = jpeg_bytes(astronaut)
    for index, image in enumerate(target_variants(astronaut, targets)):
        entries[f"{prefix}targets/t{index}.jpg"] = jpeg_bytes(image)
    return entries


def stored_files(root: Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())


def test_zip_unpacks_into_the_upload_layout(storage, astronaut):
    entries = model_entries(astronaut, targets=1)
    entries["beach.jpg"] = jpeg_bytes(target_variants(astronaut, 2)[1])
    entries["captions/beach.txt"] = b"blondie on the beach"
    report = unpack_model_zip(storage, "blondie", make_zip(entries), "uploads/blondie.zip", LIMITS)
    assert sorted(report.uploaded) == [
        "uploads/blondie/captions/beach.txt",
        "uploads/blondie/face/face.jpg",
        "uploads/blondie/model.toml",
        "uploads/blondie/targets/beach.jpg",
        "uploads/blondie/targets/t0.jpg",
    ]
    assert storage.get_bytes("uploads/blondie/captions/beach.txt") == b"blondie on the beach"


def test_zip_of_a_folder_with_a_top_level_face_file_is_understood(local_storage, astronaut):
    entries = {
        "Blondie Photos/model.toml": manifest_text().encode(),
        "Blondie Photos/face.JPG": jpeg_bytes(astronaut),
        "Blondie Photos/IMG 0001.jpg": jpeg_bytes(target_variants(astronaut, 2)[1]),
    }
    contents = read_model_zip(make_zip(entries), "photos.zip", LIMITS)
    assert [face.name for face in contents.faces] == ["Blondie Photos/face.JPG"]
    assert [target.name for target in contents.targets] == ["Blondie Photos/IMG 0001.jpg"]
    report = unpack_model_zip(local_storage, "blondie", make_zip(entries), "photos.zip", LIMITS)
    assert "uploads/blondie/targets/IMG_0001.jpg" in report.uploaded
    assert "uploads/blondie/face/face.jpg" in report.uploaded


def test_platform_junk_is_ignored_silently_and_nested_zips_and_non_images_are_listed(local_storage, astronaut):
    entries = model_entries(astronaut, targets=1)
    entries.update(
        {
            "__MACOSX/targets/._t0.jpg": b"\x00\x05\x16\x07",
            ".DS_Store": b"junk",
            "targets/Thumbs.db": b"junk",
            "targets/.hidden.jpg": b"junk",
            "targets/more.zip": make_zip({"x.jpg": b"x"}),
            "notes.pdf": b"%PDF-1.4",
            "extra/deep.jpg": jpeg_bytes(astronaut),
        }
    )
    report = unpack_model_zip(local_storage, "blondie", make_zip(entries), "uploads/blondie.zip", LIMITS)
    ignored = "\n".join(report.ignored)
    assert "targets/more.zip: a zip inside the zip is not opened" in ignored
    assert "notes.pdf: not a JPEG, PNG or WebP image; skipped" in ignored
    assert "extra/deep.jpg: not in face/, targets/ or the top level" in ignored
    assert "MACOSX" not in ignored and "DS_Store" not in ignored and "Thumbs" not in ignored
    assert "hidden" not in ignored
    assert len(report.ignored) == 3
    assert len([key for key in report.uploaded if "/targets/" in key]) == 1


def test_zip_without_manifest_uses_the_one_given(local_storage, astronaut):
    from modelcrew_assets.intake.upload import SourceFile

    data = make_zip(model_entries(astronaut, manifest=False))
    with pytest.raises(UploadError, match="no manifest"):
        unpack_model_zip(local_storage, "blondie", data, "blondie.zip", LIMITS)
    given = SourceFile("flags", manifest_text().encode())
    report = unpack_model_zip(local_storage, "blondie", data, "blondie.zip", LIMITS, manifest=given)
    assert "uploads/blondie/model.toml" in report.uploaded
    with pytest.raises(ZipIntakeError, match="the zip has its own model.toml and a manifest was also given"):
        unpack_model_zip(local_storage, "blondie", make_zip(model_entries(astronaut)), "b.zip", LIMITS, given)


def bad_zip_cases(astronaut) -> dict[str, tuple[bytes, ZipLimits, str]]:
    good = model_entries(astronaut, targets=1)
    photo = jpeg_bytes(astronaut)
    corrupt = bytearray(make_zip({**good, "targets/big.jpg": jpeg_bytes(target_variants(astronaut, 4)[3])}))
    entry = zipfile.ZipFile(io.BytesIO(bytes(corrupt))).getinfo("targets/big.jpg")
    data_start = entry.header_offset + 30 + len(entry.filename) + len(entry.extra)
    corrupt[data_start + 1000 : data_start + 1064] = bytes(64)
    return {
        "parent-traversal": (make_zip({**good, "../../evil.jpg": photo}), LIMITS, "entry '../../evil.jpg': '..'"),
        "nested-traversal": (make_zip({**good, "targets/../../x.jpg": photo}), LIMITS, "'targets/../../x.jpg'"),
        "absolute-path": (make_zip({**good, "/etc/cron.d/x": b"x"}), LIMITS, "entry '/etc/cron.d/x': absolute"),
        "drive-letter": (make_zip({**good, "C:/Windows/x.jpg": photo}), LIMITS, "entry 'C:/Windows/x.jpg': absolute"),
        "backslashes": (make_zip({**good, "..\\..\\x.jpg": photo}), LIMITS, "absolute path or drive letter"),
        "symlink": (
            make_zip({**good, "targets/link.jpg": b"/etc/passwd"}, symlinks=("targets/link.jpg",)),
            LIMITS,
            "entry 'targets/link.jpg': a symbolic link",
        ),
        "encrypted": (
            make_zip(good, encrypted=("targets/t0.jpg",)),
            LIMITS,
            "entry 'targets/t0.jpg': encrypted (password-protected)",
        ),
        "ratio-bomb": (make_zip({**good, "targets/zeros.png": bytes(20_000_000)}), LIMITS, "a ratio over 100"),
        "total-size-bomb": (
            make_zip(good),
            ZipLimits(max_uncompressed_bytes=len(photo) + 100),
            "uncompressed contents exceed",
        ),
        "too-many-entries": (make_zip(good), ZipLimits(max_entries=2), "3 entries is over the limit of 2"),
        "zip-too-big": (make_zip(good), ZipLimits(max_zip_bytes=1000), "bytes is over the 1,000-byte limit"),
        "truncated": (make_zip(good)[:-40], LIMITS, "not a readable zip"),
        "not-a-zip": (photo, LIMITS, "not a readable zip"),
        "corrupt-entry": (bytes(corrupt), LIMITS, "entry 'targets/big.jpg' is damaged"),
        "case-only-duplicates": (
            make_zip({**good, "targets/T0.JPG": photo}),
            LIMITS,
            "entries 'targets/t0.jpg' and 'targets/T0.JPG' differ only by letter case",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "parent-traversal",
        "nested-traversal",
        "absolute-path",
        "drive-letter",
        "backslashes",
        "symlink",
        "encrypted",
        "ratio-bomb",
        "total-size-bomb",
        "too-many-entries",
        "zip-too-big",
        "truncated",
        "not-a-zip",
        "corrupt-entry",
        "case-only-duplicates",
    ],
)
def test_unsafe_zip_is_refused_naming_the_entry_and_nothing_is_written(tmp_path, local_storage, astronaut, case):
    data, limits, expected = bad_zip_cases(astronaut)[case]
    with pytest.raises(ZipIntakeError) as raised:
        unpack_model_zip(local_storage, "blondie", data, "uploads/blondie.zip", limits)
    assert "uploads/blondie.zip" in str(raised.value)
    assert expected in str(raised.value)
    assert stored_files(tmp_path) == []


def test_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("MODELCREW_ZIP_MAX_ENTRIES", "7")
    monkeypatch.setenv("MODELCREW_ZIP_MAX_RATIO", "50")
    assert ZipLimits.from_env() == ZipLimits(max_entries=7, max_ratio=50)
    monkeypatch.setenv("MODELCREW_ZIP_MAX_RATIO", "lots")
    with pytest.raises(ValueError, match="MODELCREW_ZIP_MAX_RATIO='lots' is not a positive whole number"):
        ZipLimits.from_env()
