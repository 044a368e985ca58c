"""The storage layout (DESIGN.md), as functions: the only place that spells out where things live."""

from __future__ import annotations

import re
import unicodedata

MODEL_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
_SAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")

UPLOADS = "uploads"


class InvalidKeyError(ValueError):
    """A storage key that could escape its prefix or confuse a backend."""


def validate_key(key: str) -> str:
    """Return the key unchanged if it is a safe relative key, else raise naming it and the rule broken."""
    if not key:
        raise InvalidKeyError("storage key is empty")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        raise InvalidKeyError(f"storage key {key!r} contains control characters")
    if key.startswith("/") or "\\" in key or re.match(r"^[A-Za-z]:", key):
        raise InvalidKeyError(f"storage key {key!r} is absolute; keys are relative to the storage root")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts[:-1]) or parts[-1] in (".", ".."):
        raise InvalidKeyError(f"storage key {key!r} has an empty, '.' or '..' segment")
    return key


def validate_model_slug(slug: str) -> str:
    if not MODEL_SLUG.fullmatch(slug):
        raise ValueError(
            f"model name {slug!r} is not a valid slug: use 1-40 characters of a-z, 0-9, '_' or '-', "
            "starting with a letter or digit (e.g. 'blondie')"
        )
    return slug


def safe_file_name(name: str) -> str:
    """An ASCII, space-free version of a user's file name that keeps its stem recognisable."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    cleaned = _SAFE_NAME_CHARS.sub("_", ascii_name).strip("._") or "file"
    stem, dot, suffix = cleaned.rpartition(".")
    return f"{stem}.{suffix.lower()}" if dot and stem else cleaned


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def upload_prefix(model: str) -> str:
    return f"{UPLOADS}/{model}/"


def manifest_key(model: str) -> str:
    return f"{UPLOADS}/{model}/model.toml"


def face_prefix(model: str) -> str:
    return f"{UPLOADS}/{model}/face/"


def targets_prefix(model: str) -> str:
    return f"{UPLOADS}/{model}/targets/"


def hand_captions_prefix(model: str) -> str:
    return f"{UPLOADS}/{model}/captions/"


def asset_prefix(model: str, asset_name: str) -> str:
    """Where an asset's outputs for one model live: models/<model>/<asset>/."""
    return f"models/{model}/{asset_name}/"
