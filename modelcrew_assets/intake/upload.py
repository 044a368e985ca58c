"""A model's uploads, validated as a whole before anything is written, and stored once per content.

The CLI and the zip intake both go through here: `plan_upload` checks every input (manifest, each image
decoded in full, sizes) and raises one UploadError listing every problem; only a clean plan is written by
`write_upload`. Images are content-addressed within their folder: the same photo under another name, or
uploaded again, is recognised by its sha256 and not stored twice. User file names are made ASCII and
space-free, and two names that would collide get the content hash appended.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import dagster as dg
from PIL import Image

from modelcrew_assets.imaging import ImageInputError, decode_image
from modelcrew_assets.manifest import ManifestError, parse_manifest
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.resources.storage_backends import sha256_hex
from modelcrew_assets.storage_keys import (
    face_prefix,
    hand_captions_prefix,
    is_image_name,
    manifest_key,
    safe_file_name,
    targets_prefix,
    validate_key,
    validate_model_slug,
)

# Training runs at 1024 px; below this an image cannot give a usable crop of a face.
MIN_IMAGE_SIDE = 256
MAX_IMAGE_BYTES = 50 * 1024 * 1024
_SUFFIX_FOR_FORMAT = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}
_CONTENT_TYPE = {".jpg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}


class UploadError(ValueError):
    """Inputs that cannot be uploaded; lists every problem found, so one fix-up round is enough."""

    def __init__(self, model: str, problems: list[str]):
        self.problems = tuple(problems)
        listed = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"upload of model {model!r} refused, nothing was written:\n{listed}")


@dataclass(frozen=True)
class SourceFile:
    """One input as the user named it (file path or zip entry) and its bytes."""

    name: str
    data: bytes


@dataclass(frozen=True)
class UploadRequest:
    model: str
    manifest: SourceFile | None = None
    faces: tuple[SourceFile, ...] = ()
    targets: tuple[SourceFile, ...] = ()
    # Named `<target stem>.txt` after the target as the user named it.
    captions: tuple[SourceFile, ...] = ()
    # Inputs the caller chose not to upload (zip: nested zips, non-images), reported with the result.
    ignored: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlannedWrite:
    key: str
    data: bytes
    source: str
    content_type: str


@dataclass(frozen=True)
class UploadPlan:
    model: str
    writes: tuple[PlannedWrite, ...]
    duplicates: tuple[tuple[str, str], ...]
    unchanged: tuple[str, ...]
    ignored: tuple[str, ...]


@dataclass(frozen=True)
class UploadReport:
    """What an upload did: keys written, inputs already stored (name -> key holding that content),
    text files already identical, and inputs ignored with the reason."""

    model: str
    uploaded: tuple[str, ...]
    duplicates: tuple[tuple[str, str], ...]
    unchanged: tuple[str, ...]
    ignored: tuple[str, ...]


def upload(storage: StorageResource, request: UploadRequest) -> UploadReport:
    """Validate everything, then write; raises UploadError (nothing written) when anything is wrong."""
    return write_upload(storage, plan_upload(storage, request))


def plan_upload(storage: StorageResource, request: UploadRequest) -> UploadPlan:
    try:
        model = validate_model_slug(request.model)
    except ValueError as error:
        raise UploadError(request.model, [str(error)]) from None
    problems: list[str] = []
    writes: list[PlannedWrite] = []
    duplicates: list[tuple[str, str]] = []
    unchanged: list[str] = []

    _check_manifest(storage, model, request.manifest, problems)
    stems: dict[str, str] = {}
    for prefix, sources in ((face_prefix(model), request.faces), (targets_prefix(model), request.targets)):
        folder = _StoredFolder(storage, prefix)
        kind = "face image" if prefix == face_prefix(model) else "target photo"
        for source in sources:
            planned = _plan_image(folder, source, kind, problems)
            if planned is None:
                continue
            key, is_new = planned
            if is_new:
                writes.append(PlannedWrite(key, source.data, source.name, _CONTENT_TYPE[key[key.rfind(".") :]]))
            else:
                duplicates.append((source.name, key))
            if prefix == targets_prefix(model):
                stems[_stem(_base_name(source.name))] = _stem(key.rpartition("/")[2])
        # A given file that was refused is already listed by name; this is only for nothing given at all.
        if not sources and not folder.has_images():
            problems.append(f"no {kind}: {prefix} is empty and none was given; add at least one")

    ignored = list(request.ignored)
    for caption in request.captions:
        _plan_caption(storage, model, caption, stems, writes, unchanged, ignored, problems)
    if request.manifest is not None:
        # Written last, so a sensor tick in the middle of a first upload does not see a ready model.
        _plan_text(storage, manifest_key(model), request.manifest, "application/toml", writes, unchanged)
    if problems:
        raise UploadError(model, problems)
    return UploadPlan(model, tuple(writes), tuple(duplicates), tuple(unchanged), tuple(ignored))


def write_upload(storage: StorageResource, plan: UploadPlan) -> UploadReport:
    log = dg.get_dagster_logger()
    for write in plan.writes:
        storage.put_bytes(write.key, write.data, write.content_type)
        log.info(f"{plan.model}: stored {write.source} as {write.key}")
    return UploadReport(
        model=plan.model,
        uploaded=tuple(write.key for write in plan.writes),
        duplicates=plan.duplicates,
        unchanged=plan.unchanged,
        ignored=plan.ignored,
    )


class _StoredFolder:
    """The images already in a folder, by content hash and by (case-insensitive) key."""

    def __init__(self, storage: StorageResource, prefix: str):
        self.prefix = prefix
        self.by_hash: dict[str, str] = {}
        self.taken: set[str] = set()
        for obj in storage.list(prefix):
            self.taken.add(obj.key.casefold())
            if obj.size and is_image_name(obj.key):
                self.by_hash.setdefault(storage.content_sha256(obj.key), obj.key)

    def has_images(self) -> bool:
        return bool(self.by_hash)

    def claim(self, name: str, suffix: str, digest: str) -> tuple[str, bool]:
        """The key for this content: the existing one if stored already, else a free, safe new key."""
        if digest in self.by_hash:
            return self.by_hash[digest], False
        stem = _stem(safe_file_name(_base_name(name)))
        key = validate_key(f"{self.prefix}{stem}{suffix}")
        if key.casefold() in self.taken:
            key = validate_key(f"{self.prefix}{stem}-{digest[:12]}{suffix}")
        self.taken.add(key.casefold())
        self.by_hash[digest] = key
        return key, True


def _check_manifest(storage: StorageResource, model: str, given: SourceFile | None, problems: list[str]) -> None:
    if given is not None:
        source, raw = given.name, given.data
    else:
        source = manifest_key(model)
        try:
            raw = storage.get_bytes(source)
        except KeyError:
            problems.append(
                f"no manifest: {source} does not exist yet; provide model.toml "
                "(`modelcrew upload --manifest FILE`, or model.toml inside the zip)"
            )
            return
    try:
        parse_manifest(raw.decode("utf-8"), source=source, expected_name=model)
    except UnicodeDecodeError:
        problems.append(f"{source}: not UTF-8 text; save it as UTF-8")
    except ManifestError as error:
        problems.append(str(error))


def _plan_image(folder: _StoredFolder, source: SourceFile, kind: str, problems: list[str]) -> tuple[str, bool] | None:
    """`kind` ("face image" / "target photo") leads each problem, so the user knows which role a file had."""
    if len(source.data) > MAX_IMAGE_BYTES:
        problems.append(
            f"{kind} {source.name}: {len(source.data) / 2**20:.0f} MB is over the {MAX_IMAGE_BYTES // 2**20} MB "
            "limit per image; export it smaller"
        )
        return None
    try:
        image = decode_image(source.data, source.name)
    except ImageInputError as error:
        problems.append(f"{kind} {error}")
        return None
    if min(image.size) < MIN_IMAGE_SIDE:
        problems.append(
            f"{kind} {source.name}: {image.width}x{image.height} px is too small; the short side must be at least "
            f"{MIN_IMAGE_SIDE} px (1024 px or more trains best)"
        )
        return None
    image_format = Image.open(io.BytesIO(source.data)).format or ""
    return folder.claim(source.name, _SUFFIX_FOR_FORMAT[image_format], sha256_hex(source.data))


def _plan_caption(
    storage: StorageResource,
    model: str,
    caption: SourceFile,
    stems: dict[str, str],
    writes: list[PlannedWrite],
    unchanged: list[str],
    ignored: list[str],
    problems: list[str],
) -> None:
    stem = _stem(_base_name(caption.name))
    stored_stem = stems.get(stem) or _existing_target_stem(storage, model, stem)
    if stored_stem is None:
        ignored.append(f"{caption.name}: no target photo named {stem}.* for this caption; skipped")
        return
    try:
        caption.data.decode("utf-8")
    except UnicodeDecodeError:
        problems.append(f"{caption.name}: caption is not UTF-8 text; save it as UTF-8")
        return
    if not caption.data.strip():
        problems.append(f"{caption.name}: caption is empty; write the caption or leave the file out")
        return
    key = validate_key(f"{hand_captions_prefix(model)}{stored_stem}.txt")
    _plan_text(storage, key, caption, "text/plain; charset=utf-8", writes, unchanged)


def _plan_text(
    storage: StorageResource,
    key: str,
    source: SourceFile,
    content_type: str,
    writes: list[PlannedWrite],
    unchanged: list[str],
) -> None:
    """Text files (manifest, captions) are the user's current settings: a new version replaces the old."""
    if storage.exists(key) and storage.get_bytes(key) == source.data:
        unchanged.append(key)
    else:
        writes.append(PlannedWrite(key, source.data, source.name, content_type))


def _existing_target_stem(storage: StorageResource, model: str, stem: str) -> str | None:
    # The suffix is a placeholder so a dot inside the stem is not taken for an extension.
    wanted = _stem(safe_file_name(stem + ".x"))
    for obj in storage.list(targets_prefix(model) + wanted):
        if _stem(obj.key.rpartition("/")[2]) == wanted and is_image_name(obj.key):
            return wanted
    return None


def _base_name(name: str) -> str:
    """The last path segment, whatever separator the user's system used (never a path to follow)."""
    return re.split(r"[\\/]", name)[-1]


def _stem(name: str) -> str:
    stem, dot, _ = name.rpartition(".")
    return stem if dot else name
