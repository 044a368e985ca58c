"""The SDXL base a job trains or renders on, as a file on this machine.

A manifest's `[training] base_model` is a path on the GPU machine (a network volume, the image's own file, a
diffusers folder) or a storage key the studio uploaded once; a stored one is downloaded into the model cache and kept there, keyed by
its storage etag, so a box that trains and then renders fetches the 7 GB file once.
"""

from __future__ import annotations

import os
from pathlib import Path

from modelcrew_assets.object_store import ObjectStore

BASE_MODEL_ENV = "MODELCREW_BASE_MODEL"  # the image's base, used when a manifest names none
DEFAULT_BASE_MODEL = "/opt/models/sd_xl_base_1.0.safetensors"
MODEL_CACHE_ENV = "MODELCREW_MODEL_CACHE"


class BaseModelError(RuntimeError):
    """The named base model cannot be had on this machine; the message says what to do."""


def image_base_model() -> str:
    return os.environ.get(BASE_MODEL_ENV) or DEFAULT_BASE_MODEL


def local_base_model(store: ObjectStore, chosen: str | None) -> str:
    """The file to load for `chosen` (the manifest's base_model; None: the image's base)."""
    if chosen is None:
        return image_base_model()
    if chosen.startswith("/"):
        if not Path(chosen).exists():  # a checkpoint file or a diffusers folder
            raise BaseModelError(
                f"base_model {chosen} does not exist on this GPU machine; mount it there, or upload the file to "
                "storage and give its key instead"
            )
        return chosen
    stored = store.head(chosen)
    if stored is None:
        raise BaseModelError(
            f"base_model {chosen!r} is not in storage ({store.uri(chosen)}); upload the .safetensors there or "
            "give a path on the GPU machine"
        )
    cache = Path(os.environ.get(MODEL_CACHE_ENV) or Path.home() / ".cache" / "modelcrew" / "models")
    etag = "".join(c for c in stored.etag if c.isalnum())[:32] or str(stored.size)
    local = cache / etag / Path(chosen).name
    if not (local.is_file() and local.stat().st_size == stored.size):
        partial = local.with_name(local.name + ".part")
        store.download(chosen, partial)
        partial.replace(local)  # whole or absent: a cut download is never loaded
    return str(local)
