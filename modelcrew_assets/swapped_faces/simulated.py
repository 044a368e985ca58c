"""The simulated swapper: local face detection (dlib's HOG, face_detection.py) and a feathered, colour-matched
blend of the model's face into each target box. Free, deterministic and labelled `dry_run`; good enough to
demo and test the pipeline, not a likeness model. SimulatedSwapResource is what a dry-run deployment binds."""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import ClassVar

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from modelcrew_assets.face_detection import FaceBox, detect_faces
from modelcrew_assets.imaging import ImageInputError, decode_image
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.swapped_faces.inputs import ProviderName, SwapInput
from modelcrew_assets.swapped_faces.providers import SwapProvider, SwapServiceResource

# Blend a little more than the detector's brows-to-chin box so forehead and jaw come along; feather the edge.
_MARGIN = 0.15
_FEATHER = 0.08


class SimulatedSwapResource(SwapServiceResource):
    """Swaps on this machine, at no cost; what it makes is labelled dry_run."""

    provider_name: ClassVar[ProviderName] = "dry_run"
    simulated: ClassVar[bool] = True

    @asynccontextmanager
    async def swaps(self, storage: StorageResource, face: SwapInput) -> AsyncIterator[SwapProvider]:
        yield await asyncio.to_thread(SimulatedSwapProvider, face)


class SimulatedSwapProvider:
    name = "dry_run"
    simulated = True

    def __init__(self, face: SwapInput):
        boxes = detect_faces(face.image)
        if not boxes:
            raise ImageInputError(
                f"{face.key}: no face found in the model's face image; upload a clear, frontal, well-lit photo"
            )
        self._face_crop = face.image.crop(_expand(boxes[0], face.image.size))

    async def detect(self, target: SwapInput) -> list[FaceBox]:
        return await asyncio.to_thread(detect_faces, target.image)

    async def create_swap(self, target: SwapInput, face: SwapInput, boxes: Sequence[FaceBox]) -> str:
        digest = hashlib.sha256(target.sha256.encode() + face.sha256.encode() + repr(list(boxes)).encode())
        return f"dry-run-swap-{digest.hexdigest()[:16]}"

    async def finish_swap(self, job_id: str, target: SwapInput, face: SwapInput, boxes: Sequence[FaceBox]) -> bytes:
        return await asyncio.to_thread(self._swap, target.image, boxes)

    async def create_enhance(self, image: bytes) -> str:
        return f"dry-run-enhance-{hashlib.sha256(image).hexdigest()[:16]}"

    async def finish_enhance(self, job_id: str, image: bytes) -> bytes:
        sharpened = decode_image(image, job_id).filter(ImageFilter.UnsharpMask(radius=2, percent=60))
        return _png(sharpened)

    def _swap(self, target: Image.Image, boxes: Sequence[FaceBox]) -> bytes:
        result = target.copy()
        for box in boxes:
            left, top, right, bottom = _expand(box, target.size)
            size = (right - left, bottom - top)
            region = result.crop((left, top, right, bottom))
            face = _match_colour(self._face_crop.resize(size, Image.Resampling.LANCZOS), region)
            result.paste(face, (left, top), _feathered_ellipse(size))
        return _png(result)


def _expand(box: FaceBox, size: tuple[int, int]) -> tuple[int, int, int, int]:
    dx, dy = round(box.width * _MARGIN), round(box.height * _MARGIN)
    return (
        max(0, box.x - dx),
        max(0, box.y - dy),
        min(size[0], box.x + box.width + dx),
        min(size[1], box.y + box.height + dy),
    )


def _feathered_ellipse(size: tuple[int, int]) -> Image.Image:
    feather = max(1, round(min(size) * _FEATHER))
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).ellipse((feather, feather, size[0] - feather, size[1] - feather), fill=255)
    return mask.filter(ImageFilter.GaussianBlur(feather / 2))


def _match_colour(face: Image.Image, region: Image.Image) -> Image.Image:
    """Shift the face's per-channel mean and spread to the region it replaces, so the seam is soft."""
    source = np.asarray(face, dtype=np.float32)
    reference = np.asarray(region, dtype=np.float32)
    mean_s, std_s = source.mean(axis=(0, 1)), source.std(axis=(0, 1)) + 1e-3
    mean_r, std_r = reference.mean(axis=(0, 1)), reference.std(axis=(0, 1)) + 1e-3
    matched = (source - mean_s) * (std_r / std_s) + mean_r
    return Image.fromarray(np.clip(matched, 0, 255).astype(np.uint8))


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # zlib level 1 encodes ~3x faster than the default 6 and is as lossless; the stage decodes the result and
    # stores its own JPEG, so only the encode time differs.
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
