"""intake.upload: everything validated before anything is written; images stored once by content."""

import functools
import io

import pytest
from PIL import Image

from modelcrew_assets.intake.upload import MIN_IMAGE_SIDE, SourceFile, UploadError, UploadRequest, upload
from modelcrew_assets.storage_keys import manifest_key
from modelcrew_assets_tests.builders import jpeg_bytes, manifest_text, target_variants


def keys(storage):
    return sorted(obj.key for obj in storage.list("uploads/"))


def request(astronaut, model="blondie", manifest=None, targets=None, faces=None, captions=()):
    return UploadRequest(
        model=model,
        manifest=SourceFile("model.toml", (manifest or manifest_text(model, model)).encode()),
        faces=faces or (SourceFile("face.jpg", jpeg_bytes(astronaut)),),
        targets=targets
        or tuple(SourceFile(f"t{i}.jpg", jpeg_bytes(v)) for i, v in enumerate(target_variants(astronaut, 3))),
        captions=captions,
    )


@functools.cache
def bomb_png() -> bytes:
    """A tiny file that decodes to more pixels than Pillow's limit (1-bit, so it is quick to make)."""
    return png_bytes(Image.new("1", (12_000, 9_000)))


def png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_valid_upload_writes_the_design_layout(storage, astronaut):
    report = upload(storage, request(astronaut))
    assert keys(storage) == [
        "uploads/blondie/face/face.jpg",
        "uploads/blondie/model.toml",
        "uploads/blondie/targets/t0.jpg",
        "uploads/blondie/targets/t1.jpg",
        "uploads/blondie/targets/t2.jpg",
    ]
    assert report.uploaded[-1] == manifest_key("blondie"), "the manifest is written last"
    assert not report.duplicates


def test_same_image_under_two_names_and_uploaded_again_is_stored_once(storage, astronaut):
    same = jpeg_bytes(target_variants(astronaut, 1)[0])
    first = upload(storage, request(astronaut, targets=(SourceFile("a.jpg", same), SourceFile("copy of a.jpg", same))))
    assert [key for key in first.uploaded if "/targets/" in key] == ["uploads/blondie/targets/a.jpg"]
    assert first.duplicates == (("copy of a.jpg", "uploads/blondie/targets/a.jpg"),)

    again = upload(storage, request(astronaut, targets=(SourceFile("renamed.jpg", same),)))
    assert again.uploaded == ()
    assert ("renamed.jpg", "uploads/blondie/targets/a.jpg") in again.duplicates
    assert again.unchanged == (manifest_key("blondie"),)
    assert len([key for key in keys(storage) if "/targets/" in key]) == 1


def test_bad_images_are_all_listed_by_name_and_nothing_is_written(storage, astronaut):
    bomb = bomb_png()
    gif = io.BytesIO()
    astronaut.save(gif, format="GIF")
    targets = (
        SourceFile("good.jpg", jpeg_bytes(astronaut)),
        SourceFile("empty.jpg", b""),
        SourceFile("notes.txt", b"not a photo"),
        SourceFile("bomb.png", bomb),
        SourceFile("anim.gif", gif.getvalue()),
        SourceFile("truncated.jpg", jpeg_bytes(astronaut)[:5000]),
        SourceFile("tiny.jpg", jpeg_bytes(astronaut.resize((MIN_IMAGE_SIDE - 1, MIN_IMAGE_SIDE - 1)))),
    )
    with pytest.raises(UploadError) as raised:
        upload(storage, request(astronaut, targets=targets))
    message = str(raised.value)
    assert "nothing was written" in message
    assert "empty.jpg: the file is empty" in message
    assert "notes.txt: not an image" in message
    assert "bomb.png: refused as a possible decompression bomb" in message
    assert "anim.gif: GIF is not supported" in message
    assert "truncated.jpg: the image is damaged or truncated" in message
    assert "tiny.jpg: 255x255 px is too small" in message
    assert "good.jpg" not in message
    assert len(raised.value.problems) == 6
    assert keys(storage) == []


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ("[model\nname=", "model.toml: not valid TOML"),
        (manifest_text().replace('class_word = "woman"\n', ""), "missing required field [model].class_word"),
        (manifest_text(name="Blondie Two"), "[model].name: Value error, must be 1-40 characters"),
        (manifest_text(extra="[training]\nrepeat = 3\n"), "unknown key [training].repeat (allowed here: repeats"),
        (manifest_text(name="other"), "[model].name is 'other' but the upload folder is 'blondie'"),
    ],
    ids=["invalid-toml", "missing-field", "bad-slug", "unknown-key", "name-mismatch"],
)
def test_bad_manifest_is_refused_naming_the_field(local_storage, astronaut, manifest, expected):
    with pytest.raises(UploadError, match="nothing was written") as raised:
        upload(local_storage, request(astronaut, manifest=manifest))
    assert expected in str(raised.value)
    assert keys(local_storage) == []


def test_missing_manifest_must_already_be_in_storage(local_storage, astronaut):
    without = UploadRequest("blondie", None, request(astronaut).faces, request(astronaut).targets)
    with pytest.raises(UploadError, match=r"no manifest: uploads/blondie/model.toml does not exist yet"):
        upload(local_storage, without)
    assert keys(local_storage) == []

    upload(local_storage, request(astronaut))
    more = UploadRequest("blondie", targets=(SourceFile("more.jpg", jpeg_bytes(target_variants(astronaut, 5)[4])),))
    assert upload(local_storage, more).uploaded == ("uploads/blondie/targets/more.jpg",)


def test_model_needs_a_face_and_a_target(local_storage, astronaut):
    with pytest.raises(UploadError) as raised:
        upload(local_storage, UploadRequest("blondie", request(astronaut).manifest))
    assert "no face image" in str(raised.value) and "no target photo" in str(raised.value)


def test_a_text_file_given_as_the_face_is_named_as_the_face_once(local_storage, astronaut):
    with pytest.raises(UploadError) as raised:
        upload(local_storage, request(astronaut, faces=(SourceFile("notes.txt", b"not a photo"),)))
    # One problem, the face that is not an image; no extra "none was given".
    [problem] = raised.value.problems
    assert problem.startswith("face image notes.txt: not an image")


@pytest.mark.parametrize("model", ["../etc", "Blondie", "a/b", ""])
def test_invalid_model_name_is_refused(local_storage, astronaut, model):
    with pytest.raises(UploadError, match="not a valid slug"):
        upload(local_storage, request(astronaut, model=model, manifest=manifest_text()))
    assert keys(local_storage) == []


def test_path_traversal_in_file_names_is_neutralised(storage, astronaut):
    variants = target_variants(astronaut, 3)
    targets = (
        SourceFile("../../../etc/passwd.jpg", jpeg_bytes(variants[0])),
        SourceFile("..\\..\\windows\\evil.jpg", jpeg_bytes(variants[1])),
        SourceFile("/abs/olute.jpg", jpeg_bytes(variants[2])),
    )
    upload(storage, request(astronaut, targets=targets))
    assert [key for key in keys(storage) if "/targets/" in key] == [
        "uploads/blondie/targets/evil.jpg",
        "uploads/blondie/targets/olute.jpg",
        "uploads/blondie/targets/passwd.jpg",
    ]
    assert all(key.startswith("uploads/blondie/") for key in keys(storage))


def test_names_with_spaces_and_non_ascii_become_safe_keys_without_collisions(storage, astronaut):
    variants = target_variants(astronaut, 3)
    targets = (
        SourceFile("Strand Tag 1.JPG", jpeg_bytes(variants[0])),
        SourceFile("Strand_Tag_1.jpg", jpeg_bytes(variants[1])),
        SourceFile("Café Ümlaut.jpeg", jpeg_bytes(variants[2])),
    )
    report = upload(storage, request(astronaut, targets=targets))
    stored = [key.rpartition("/")[2] for key in report.uploaded if "/targets/" in key]
    assert stored[0] == "Strand_Tag_1.jpg"
    assert stored[1].startswith("Strand_Tag_1-") and stored[1].endswith(".jpg")
    assert stored[2] == "Cafe_Umlaut.jpg"
    assert all(name.isascii() and " " not in name for name in stored)


def test_suffix_follows_the_real_format(local_storage, astronaut):
    targets = (SourceFile("really-a-png.jpg", png_bytes(astronaut)),)
    report = upload(local_storage, request(astronaut, targets=targets))
    assert "uploads/blondie/targets/really-a-png.png" in report.uploaded


def test_captions_follow_their_target_to_its_stored_name(local_storage, astronaut):
    targets = (SourceFile("Beach Day.jpg", jpeg_bytes(astronaut)),)
    captions = (SourceFile("captions/Beach Day.txt", b"blondie at the beach"), SourceFile("captions/orphan.txt", b"x"))
    report = upload(local_storage, request(astronaut, targets=targets, captions=captions))
    assert local_storage.get_bytes("uploads/blondie/captions/Beach_Day.txt") == b"blondie at the beach"
    assert any("orphan.txt: no target photo named orphan" in item for item in report.ignored)
