"""What one swap run works on: the model's face, its target photos (decoded, hashed, de-duplicated) and
the options that decide a result, hashed into the cache key that makes "never pay twice" possible."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict

from modelcrew_assets import asset_names
from modelcrew_assets.imaging import ImageInputError, decode_image
from modelcrew_assets.intake.upload_scan import ModelUploads
from modelcrew_assets.object_store import Storage
from modelcrew_assets.resources.storage_backends import sha256_hex

ASSET = asset_names.SWAPPED_FACES
# The providers' names as cache keys and sidecars record them ("dry_run" is the simulated swapper's).
ProviderName = Literal["maxstudio", "dry_run"]


class SwapOptions(BaseModel):
    """Everything besides the two images that changes a swap's result (so it is part of the cache key)."""

    model_config = ConfigDict(frozen=True)

    faces: Literal["largest", "all"] = "largest"
    enhance: bool = False
    provider: ProviderName = "maxstudio"


@dataclass(frozen=True)
class SwapInput:
    """One stored image, read and decoded once."""

    key: str
    data: bytes = field(repr=False)
    sha256: str
    image: Image.Image = field(repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class SwapTarget:
    """A target photo to swap; `duplicates` are other uploads with the same bytes (swapped once)."""

    source: SwapInput
    cache_key: str
    duplicates: tuple[str, ...] = ()


@dataclass(frozen=True)
class SwapInputs:
    face: SwapInput
    targets: tuple[SwapTarget, ...]
    unreadable: tuple[tuple[str, str], ...]  # (key, why)


def cache_key(target_sha256: str, face_sha256: str, options: SwapOptions) -> str:
    payload = {"target": target_sha256, "face": face_sha256, "options": options.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def read_input(storage: Storage, key: str) -> SwapInput:
    """Read and decode one image; ImageInputError names the key and says what to do."""
    data = storage.get_bytes(key)
    return SwapInput(key=key, data=data, sha256=sha256_hex(data), image=decode_image(data, key))


def load_inputs(storage: Storage, uploads: ModelUploads, options: SwapOptions) -> SwapInputs:
    """The first face image (sorted) and every readable target; unreadable targets are listed, not fatal."""
    face = read_input(storage, uploads.faces[0].key)
    keys = [obj.key for obj in uploads.targets]
    with ThreadPoolExecutor(max_workers=8) as pool:
        loaded = list(pool.map(lambda key: _try_read(storage, key), keys))
    by_cache_key: dict[str, list[SwapInput]] = {}
    unreadable = []
    for key, result in zip(keys, loaded, strict=True):
        if isinstance(result, str):
            unreadable.append((key, result))
            continue
        by_cache_key.setdefault(cache_key(result.sha256, face.sha256, options), []).append(result)
    targets = tuple(
        SwapTarget(source=same[0], cache_key=key, duplicates=tuple(other.key for other in same[1:]))
        for key, same in by_cache_key.items()
    )
    return SwapInputs(face=face, targets=targets, unreadable=tuple(unreadable))


def _try_read(storage: Storage, key: str) -> SwapInput | str:
    try:
        return read_input(storage, key)
    except ImageInputError as error:
        return str(error)
