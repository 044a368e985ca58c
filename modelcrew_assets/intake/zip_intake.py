"""A model's photos as one zip: read safely in memory, sorted into the normal upload layout.

Nothing is ever extracted to disk: entries are read into memory under size limits and handed to
intake.upload, which validates and writes them under uploads/<model>/ only. Every unsafe entry (path
traversal, symlink, encryption, case-only duplicate names) refuses the whole zip with an error naming it;
platform junk is ignored silently; nested zips, non-images and images in unknown folders are listed and
skipped.
"""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass

from modelcrew_assets.intake.upload import SourceFile, UploadReport, UploadRequest, upload
from modelcrew_assets.intake.upload_scan import is_junk_name
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.settings import int_from_env
from modelcrew_assets.storage_keys import is_image_name

_SYMLINK_MODE = 0o120000
_ENCRYPTED_FLAG = 0x1
# Small entries may compress extremely well without being a threat; the ratio limit applies above this.
_RATIO_FLOOR_BYTES = 1024 * 1024
_READ_CHUNK = 1024 * 1024
_LAYOUT_FOLDERS = ("face", "targets", "captions")


class ZipIntakeError(ValueError):
    """A zip that is refused as a whole; the message names the zip and the offending entry."""


@dataclass(frozen=True)
class ZipLimits:
    """Limits against zip bombs and runaway uploads; each can be set by an environment variable."""

    max_zip_bytes: int = 1024 * 1024 * 1024
    max_uncompressed_bytes: int = 2 * 1024 * 1024 * 1024
    max_entries: int = 5000
    max_ratio: int = 100

    @classmethod
    def from_env(cls) -> ZipLimits:
        return cls(
            max_zip_bytes=int_from_env("MODELCREW_ZIP_MAX_BYTES", cls.max_zip_bytes),
            max_uncompressed_bytes=int_from_env("MODELCREW_ZIP_MAX_UNCOMPRESSED_BYTES", cls.max_uncompressed_bytes),
            max_entries=int_from_env("MODELCREW_ZIP_MAX_ENTRIES", cls.max_entries),
            max_ratio=int_from_env("MODELCREW_ZIP_MAX_RATIO", cls.max_ratio),
        )


@dataclass(frozen=True)
class ZipContents:
    manifest: SourceFile | None
    faces: tuple[SourceFile, ...]
    targets: tuple[SourceFile, ...]
    captions: tuple[SourceFile, ...]
    ignored: tuple[str, ...]

    def request(self, model: str, manifest: SourceFile | None = None) -> UploadRequest:
        """The upload this zip makes; `manifest` (e.g. built from CLI flags) stands in when it has none."""
        if manifest is not None and self.manifest is not None:
            raise ZipIntakeError(
                f"the zip has its own {self.manifest.name} and a manifest was also given; "
                "remove one of them so it is clear which applies"
            )
        return UploadRequest(
            model=model,
            manifest=manifest or self.manifest,
            faces=self.faces,
            targets=self.targets,
            captions=self.captions,
            ignored=self.ignored,
        )


def unpack_model_zip(
    storage: StorageResource,
    model: str,
    data: bytes,
    source: str,
    limits: ZipLimits,
    manifest: SourceFile | None = None,
) -> UploadReport:
    """Read the zip, validate everything, then write it under uploads/<model>/ (the zip itself is not
    touched). Raises ZipIntakeError or UploadError with nothing written."""
    return upload(storage, read_model_zip(data, source, limits).request(model, manifest))


def read_model_zip(data: bytes, source: str, limits: ZipLimits) -> ZipContents:
    if len(data) > limits.max_zip_bytes:
        raise ZipIntakeError(
            f"{source}: {len(data):,} bytes is over the {limits.max_zip_bytes:,}-byte limit for a zip "
            "(MODELCREW_ZIP_MAX_BYTES); split the photos into smaller zips"
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as error:
        raise ZipIntakeError(
            f"{source}: not a readable zip ({error}); it may be truncated or damaged, so create and upload it again"
        ) from None
    with archive:
        entries = _safe_entries(archive.infolist(), source, limits)
        names = _strip_common_folder([info.filename for info in entries])
        return _sort_entries(archive, entries, names, source, limits)


def _safe_entries(infos: list[zipfile.ZipInfo], source: str, limits: ZipLimits) -> list[zipfile.ZipInfo]:
    """The file entries worth reading, after refusing anything unsafe and dropping platform junk."""
    if len(infos) > limits.max_entries:
        raise ZipIntakeError(
            f"{source}: {len(infos):,} entries is over the limit of {limits.max_entries:,} "
            "(MODELCREW_ZIP_MAX_ENTRIES); is this the right zip?"
        )
    problems: list[str] = []
    kept: list[zipfile.ZipInfo] = []
    seen: dict[str, str] = {}
    total = 0
    for info in infos:
        name = info.filename
        problem = _unsafe_reason(info)
        if problem:
            problems.append(f"entry {name!r}: {problem}")
            continue
        if info.is_dir() or _is_platform_junk(name):
            continue
        folded = unicodedata.normalize("NFC", name).casefold()
        if folded in seen:
            problems.append(
                f"entries {seen[folded]!r} and {name!r} differ only by letter case (or are the same name); "
                "they would overwrite each other on most systems, so rename one"
            )
            continue
        seen[folded] = name
        total += info.file_size
        if info.file_size > _RATIO_FLOOR_BYTES and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise ZipIntakeError(
                f"{source}: entry {name!r} expands {info.compress_size:,} -> {info.file_size:,} bytes, a ratio "
                f"over {limits.max_ratio} (MODELCREW_ZIP_MAX_RATIO): refused as a possible zip bomb"
            )
        if total > limits.max_uncompressed_bytes:
            raise ZipIntakeError(
                f"{source}: uncompressed contents exceed {limits.max_uncompressed_bytes:,} bytes "
                f"(MODELCREW_ZIP_MAX_UNCOMPRESSED_BYTES) at entry {name!r}: refused as a possible zip bomb"
            )
        kept.append(info)
    if problems:
        listed = "\n".join(f"  - {problem}" for problem in problems)
        raise ZipIntakeError(f"{source}: refused, nothing was unpacked:\n{listed}")
    return kept


def _unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return "control characters in the name"
    if name.startswith("/") or "\\" in name or re.match(r"^[A-Za-z]:", name):
        return "absolute path or drive letter (path traversal); zips must hold relative paths"
    if ".." in name.split("/"):
        return "'..' in the path (path traversal); entries must stay inside the zip's folder"
    if (info.external_attr >> 16) & 0o170000 == _SYMLINK_MODE:
        return "a symbolic link; zip the files themselves, not links to them"
    if info.flag_bits & _ENCRYPTED_FLAG:
        return "encrypted (password-protected); zip the photos without a password"
    return None


def _is_platform_junk(name: str) -> bool:
    parts = name.split("/")
    return any(part == "__MACOSX" or is_junk_name(part) for part in parts if part)


def _strip_common_folder(names: list[str]) -> list[str]:
    """A zip of a folder (`blondie/face.jpg`, ...) is read as if the folder's contents were zipped."""
    tops = {name.split("/", 1)[0] for name in names}
    if len(tops) == 1 and all("/" in name for name in names) and next(iter(tops)) not in _LAYOUT_FOLDERS:
        return [name.split("/", 1)[1] for name in names]
    return names


def _sort_entries(
    archive: zipfile.ZipFile, entries: list[zipfile.ZipInfo], names: list[str], source: str, limits: ZipLimits
) -> ZipContents:
    manifest = None
    faces, targets, captions, ignored = [], [], [], []
    read_total = 0
    for info, name in zip(entries, names, strict=True):
        folder, _, base = name.rpartition("/")
        stem = base.rpartition(".")[0].casefold()
        if base.lower().endswith(".zip"):
            ignored.append(f"{info.filename}: a zip inside the zip is not opened; upload it on its own")
            continue
        if name == "model.toml":
            role = "manifest"
        elif is_image_name(base) and (folder == "face" or (folder == "" and stem == "face")):
            role = "face"
        elif is_image_name(base) and folder in ("targets", ""):
            role = "target"
        elif folder == "captions" and base.lower().endswith(".txt"):
            role = "caption"
        elif is_image_name(base):
            ignored.append(f"{info.filename}: not in face/, targets/ or the top level; skipped")
            continue
        else:
            ignored.append(f"{info.filename}: not a JPEG, PNG or WebP image; skipped")
            continue
        data = _read_entry(archive, info, source, limits.max_uncompressed_bytes - read_total)
        read_total += len(data)
        item = SourceFile(info.filename, data)
        if role == "manifest":
            manifest = item
        else:
            {"face": faces, "target": targets, "caption": captions}[role].append(item)
    return ZipContents(manifest, tuple(faces), tuple(targets), tuple(captions), tuple(ignored))


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str, budget: int) -> bytes:
    """The entry's bytes, never more than the remaining budget, whatever its header claims."""
    chunks, size = [], 0
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(_READ_CHUNK):
                size += len(chunk)
                if size > budget:
                    raise ZipIntakeError(
                        f"{source}: entry {info.filename!r} expands beyond the uncompressed size limit "
                        "(MODELCREW_ZIP_MAX_UNCOMPRESSED_BYTES): refused as a possible zip bomb"
                    )
                chunks.append(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as error:
        raise ZipIntakeError(
            f"{source}: entry {info.filename!r} is damaged ({error}); create the zip again and upload it"
        ) from None
    return b"".join(chunks)
