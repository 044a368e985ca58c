"""Where to cut each platform's frame out of a photo: keep the face whole (and, on 9:16, clear of the
app's UI), else the most detailed region, else the centre. Pure geometry on floats; no pixels are touched
except the small detail map."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageFilter

from modelcrew_assets.platform_exports.platforms import Platform

Box = tuple[float, float, float, float]  # left, top, right, bottom

# dlib's HOG boxes run from the brows to the chin; pad them so forehead, hair and chin stay in frame too.
_FACE_PAD_TOP, _FACE_PAD_BOTTOM, _FACE_PAD_SIDE = 0.35, 0.10, 0.10
# Zoom in at most this far (crop side vs the largest possible crop) to clear the UI zones.
_MAX_ZOOM = 1.7
# Where the face centre sits in the frame, as a fraction of the crop height (a bit above the middle).
_FACE_EYE_LINE = 0.40
# The detail window must beat the centre window by this much to be chosen over the centre.
_DETAIL_MIN_GAIN = 1.10
_DETAIL_MAP_SIDE = 192


@dataclass(frozen=True)
class CropPlan:
    box: Box
    strategy: Literal["face", "detail", "centre"]
    face_kept: bool | None = None  # face whole in frame (and clear of UI zones); None: no face known


def largest_crop(width: float, height: float, aspect: float) -> tuple[float, float]:
    if width / height > aspect:
        return height * aspect, height
    return width, width / aspect


def pad_face(face: Box, width: float, height: float) -> Box:
    left, top, right, bottom = face
    fw, fh = right - left, bottom - top
    return (
        max(0.0, left - _FACE_PAD_SIDE * fw),
        max(0.0, top - _FACE_PAD_TOP * fh),
        min(width, right + _FACE_PAD_SIDE * fw),
        min(height, bottom + _FACE_PAD_BOTTOM * fh),
    )


def plan_crop(
    size: tuple[float, float], platform: Platform, face: Box | None = None, detail: np.ndarray | None = None
) -> CropPlan:
    """The crop box for one platform. `face` is in image pixels; `detail` is a detail_map of the image."""
    width, height = size
    if face is not None:
        return _face_crop(width, height, platform, pad_face(face, width, height))
    crop_w, crop_h = largest_crop(width, height, platform.aspect)
    centre = ((width - crop_w) / 2, (height - crop_h) / 2)
    if detail is not None:
        offset = _most_detailed_offset(detail, width, height, crop_w, crop_h)
        if offset is not None:
            return CropPlan((offset[0], offset[1], offset[0] + crop_w, offset[1] + crop_h), "detail")
    return CropPlan((centre[0], centre[1], centre[0] + crop_w, centre[1] + crop_h), "centre")


def _face_crop(width: float, height: float, platform: Platform, face: Box) -> CropPlan:
    aspect, top_ui, bottom_ui = platform.aspect, platform.ui_top, platform.ui_bottom
    full_w, full_h = largest_crop(width, height, aspect)
    fx0, fy0, fx1, fy1 = face
    face_w, face_h = fx1 - fx0, fy1 - fy0
    # The tallest crop that keeps the face between the UI bands, and the shortest the face fits in.
    limits = [full_h]
    if top_ui > 0:
        limits.append(fy0 / top_ui)
    if bottom_ui > 0:
        limits.append((height - fy1) / bottom_ui)
    crop_h = min(limits)
    needed_h = max(face_h / (1.0 - top_ui - bottom_ui), face_w / aspect)
    clear = crop_h >= needed_h and crop_h >= full_h / _MAX_ZOOM
    if not clear:
        # The UI zones cannot be cleared: keep the whole face in the largest frame instead.
        crop_h, top_ui, bottom_ui = full_h, 0.0, 0.0
    crop_w = crop_h * aspect
    x = _clamp((fx0 + fx1) / 2 - crop_w / 2, [0.0, fx1 - crop_w], [width - crop_w, fx0])
    band_low = max(0.0, fy1 - (1.0 - bottom_ui) * crop_h)
    band_high = min(height - crop_h, fy0 - top_ui * crop_h)
    y = _clamp((fy0 + fy1) / 2 - _FACE_EYE_LINE * crop_h, [band_low], [band_high])
    # The bands are sums of floats and can end a hair outside the image (-1e-14), which Pillow refuses.
    x, y = min(max(x, 0.0), max(0.0, width - crop_w)), min(max(y, 0.0), max(0.0, height - crop_h))
    has_ui = platform.ui_top > 0 or platform.ui_bottom > 0
    return CropPlan((x, y, x + crop_w, y + crop_h), "face", face_kept=clear if has_ui else crop_h >= needed_h)


def _clamp(value: float, lows: list[float], highs: list[float]) -> float:
    """Clamp into [max(lows), min(highs)]; when that range is empty the image bounds (first items) win."""
    low, high = max(lows), min(highs)
    if low > high:
        low, high = lows[0], highs[0]
    return min(max(value, low), high)


def detail_map(image: Image.Image) -> np.ndarray:
    """Edge energy on a small grey copy: where the picture has something to look at."""
    small = image.convert("L")
    small.thumbnail((_DETAIL_MAP_SIDE, _DETAIL_MAP_SIDE))
    return np.asarray(small.filter(ImageFilter.FIND_EDGES), dtype=np.float64)


def _most_detailed_offset(
    detail: np.ndarray, width: float, height: float, crop_w: float, crop_h: float
) -> tuple[float, float] | None:
    """The crop position with the most edge energy, along the one axis a largest crop can slide on;
    None when no position beats the centre clearly (then the centre is the calmer choice)."""
    slide_x = crop_w < width - 0.5
    if not slide_x and crop_h >= height - 0.5:
        return None
    profile = detail.sum(axis=0 if slide_x else 1)
    span = len(profile)
    window = max(1, round(span * (crop_w / width if slide_x else crop_h / height)))
    sums = np.convolve(profile, np.ones(window), mode="valid")
    best = int(np.argmax(sums))
    centre = (len(sums) - 1) // 2
    if sums[best] < _DETAIL_MIN_GAIN * max(sums[centre], 1e-9):
        return None
    free = (width - crop_w) if slide_x else (height - crop_h)
    offset = free * best / max(1, len(sums) - 1)
    return (offset, 0.0) if slide_x else (0.0, offset)
