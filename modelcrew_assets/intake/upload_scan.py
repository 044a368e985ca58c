"""What a listing of `uploads/` says about each model: which files it has, whether it is ready, and a
fingerprint that changes exactly when its inputs change. Pure: it works on listings, not on a store."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from modelcrew_assets.resources.storage_backends import StoredObject
from modelcrew_assets.storage_keys import MODEL_SLUG, UPLOADS, is_image_name

_JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}


@dataclass(frozen=True)
class ModelUploads:
    """One model's uploaded inputs as of one listing."""

    model: str
    manifest: StoredObject | None
    faces: tuple[StoredObject, ...]
    targets: tuple[StoredObject, ...]
    captions: tuple[StoredObject, ...]
    empty_files: tuple[str, ...]
    fingerprint: str

    @property
    def missing(self) -> list[str]:
        """What the model still needs before a run makes sense, in words a person acts on."""
        needs = []
        if self.manifest is None:
            needs.append(f"{UPLOADS}/{self.model}/model.toml")
        if not self.faces:
            needs.append(f"a face image in {UPLOADS}/{self.model}/face/")
        if not self.targets:
            needs.append(f"at least one target photo in {UPLOADS}/{self.model}/targets/")
        return needs


@dataclass(frozen=True)
class UploadsListing:
    models: dict[str, ModelUploads]
    invalid_folders: tuple[str, ...]


def group_uploads(objects: Iterable[StoredObject]) -> UploadsListing:
    """Group a listing of `uploads/` by model folder, ignoring platform junk and temp files."""
    by_model: dict[str, list[StoredObject]] = defaultdict(list)
    invalid: set[str] = set()
    for obj in objects:
        parts = obj.key.split("/")
        if len(parts) < 3 or parts[0] != UPLOADS or is_junk_name(parts[-1]):
            continue
        if not MODEL_SLUG.fullmatch(parts[1]):
            invalid.add(parts[1])
            continue
        by_model[parts[1]].append(obj)
    return UploadsListing(
        models={model: _summarise(model, objs) for model, objs in sorted(by_model.items())},
        invalid_folders=tuple(sorted(invalid)),
    )


def is_junk_name(name: str) -> bool:
    """Files operating systems leave behind (.DS_Store, Thumbs.db, ._resource forks, hidden files)."""
    return name.lower() in _JUNK_NAMES or name.startswith(".") or name.startswith("._")


def _summarise(model: str, objects: list[StoredObject]) -> ModelUploads:
    manifest = None
    faces, targets, captions, empty = [], [], [], []
    for obj in sorted(objects, key=lambda o: o.key):
        relative = obj.key.split("/", 2)[2]
        folder, _, name = relative.rpartition("/")
        if obj.size == 0:
            empty.append(relative)
        elif relative == "model.toml":
            manifest = obj
        elif folder == "face" and is_image_name(name):
            faces.append(obj)
        elif folder == "targets" and is_image_name(name):
            targets.append(obj)
        elif folder == "captions" and name.endswith(".txt"):
            captions.append(obj)
    return ModelUploads(
        model=model,
        manifest=manifest,
        faces=tuple(faces),
        targets=tuple(targets),
        captions=tuple(captions),
        empty_files=tuple(empty),
        fingerprint=fingerprint(objects),
    )


def fingerprint(objects: Iterable[StoredObject]) -> str:
    """sha256 over the sorted (key, etag) pairs: the same inputs always give the same value."""
    digest = hashlib.sha256()
    for obj in sorted(objects, key=lambda o: o.key):
        digest.update(f"{obj.key}\t{obj.etag}\n".encode())
    return digest.hexdigest()
