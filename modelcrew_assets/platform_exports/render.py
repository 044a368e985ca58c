"""The export core for one source image: decode once, find the face, and derive every platform's JPEG
from that one reduced decode. Pure: bytes in, bytes out; no Dagster, no storage, safe in a worker process."""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Literal

import numpy as np
from PIL import Image

from modelcrew_assets.face_detection import detect_faces
from modelcrew_assets.platform_exports import source_decode
from modelcrew_assets.platform_exports.crop import Box, CropPlan, detail_map, largest_crop, plan_crop
from modelcrew_assets.platform_exports.labels import AiLabel, xmp_packet
from modelcrew_assets.platform_exports.platforms import Platform
from modelcrew_assets.platform_exports.provenance import C2paSigning, sign_jpeg
from modelcrew_assets.platform_exports.watermark import Watermark, stamp

# libjpeg quality of every export: high enough that platforms' own recompression does not show blocks,
# progressive so feeds show a full-size preview early.
DEFAULT_JPEG_QUALITY = 88
# Face detection runs on a copy this size: Haar cost grows with pixels; post-worthy faces are not tiny.
# Shrink with reduce() (box filter, fast) down to this multiple of the target, then LANCZOS to exact size.
_REDUCING_GAP = 2.0
# A zoomed crop may be enlarged this much from the first decode before the source is decoded again.
_MAX_UPSCALE = 1.1
# Detected faces at least this fraction of the largest one's area are kept in frame with it.
_COMPANION_FACE_AREA = 0.25
# On simulated output, top left (the watermark defaults to bottom right), wide enough to read on a phone.
DRY_RUN_BANNER = Watermark(text="DRY RUN - simulated", position="top-left", opacity=0.9, width=0.45)


@dataclass(frozen=True)
class ExportSettings:
    platforms: tuple[Platform, ...]
    quality: int = DEFAULT_JPEG_QUALITY
    watermark: Watermark | None = None
    c2pa: C2paSigning | None = None  # sign a C2PA manifest into every export when set
    min_source_side: int = source_decode.MIN_SOURCE_SIDE


# How a render serves a platform: rendered at its aspect, or cropped to it (only where the face fits, when
# the batch has no render at that aspect), or, for a batch without per-platform renders, cropped as needed.
Fit = Literal["native", "cropped", "any"]


@dataclass(frozen=True)
class SourceImage:
    name: str  # names the image in errors
    data: bytes
    label: AiLabel
    face_box: tuple[int, int, int, int] | None = None  # x, y, w, h in upright source pixels, if known
    serves: tuple[tuple[str, Fit], ...] | None = None  # (platform, fit); None: every platform, "any"


@dataclass(frozen=True)
class Rendered:
    platform: str
    jpeg: bytes
    width: int
    height: int
    plan: CropPlan  # in source pixels
    face_box: Box | None  # where the face landed in the output, in output pixels
    watermark_box: tuple[int, int, int, int] | None
    fit: Fit = "any"


def render_source(source: SourceImage, settings: ExportSettings) -> tuple[Rendered, ...]:
    """The exports of one image for the platforms it serves; ImageInputError naming it when it cannot be
    used. A "cropped" platform gets nothing when the crop would cut the face or push it under the UI."""
    served = _served(source, settings.platforms)
    if not served:
        return ()
    platforms = tuple(platform for platform, _ in served)
    source_size = source_decode.probe(source.data, source.name, settings.min_source_side)
    working = source_decode.decode(source.data, source.name, _scale_needed(source_size, platforms))
    faces = _faces(source, working)
    detail = None if faces else detail_map(working.image)
    plans = [_plan(source_size, platform, faces, detail) for platform in platforms]
    kept = [
        (plan, platform, fit)
        for plan, (platform, fit) in zip(plans, served, strict=True)
        if not (fit == "cropped" and plan.face_kept is False)
    ]
    if not kept:
        return ()
    face = faces[0] if faces else None
    zoomed = max(_scale_for(plan.box, platform) for plan, platform, _ in kept)
    detailed = working
    if zoomed > working.scale * _MAX_UPSCALE and working.scale < 1.0:
        # A crop zoomed in to clear the UI zones needs more pixels than the first decode kept; only the
        # platforms that zoomed use this second, larger decode.
        detailed = source_decode.decode(source.data, source.name, zoomed)
    xmp = xmp_packet(source.label)
    # Platforms with the same size and UI zones (Stories and TikTok) get the same pixels: render once.
    done: dict[tuple, Rendered] = {}
    results = []
    for plan, platform, fit in kept:
        shape = (platform.size, platform.ui_top, platform.ui_bottom)
        if shape not in done:
            image = detailed if _scale_for(plan.box, platform) > working.scale * _MAX_UPSCALE else working
            done[shape] = _render_one(image, platform, plan, face, settings, source, xmp)
        results.append(replace(done[shape], platform=platform.name, fit=fit))
    return tuple(results)


def _served(source: SourceImage, platforms: tuple[Platform, ...]) -> list[tuple[Platform, Fit]]:
    if source.serves is None:
        return [(platform, "any") for platform in platforms]
    fits = dict(source.serves)
    return [(platform, fits[platform.name]) for platform in platforms if platform.name in fits]


def _scale_needed(source_size: tuple[int, int], platforms: tuple[Platform, ...]) -> float:
    """The decode scale at which the largest crop for every platform still has its target's pixels."""
    return max(platform.height / largest_crop(*source_size, platform.aspect)[1] for platform in platforms)


def _scale_for(box: Box, platform: Platform) -> float:
    return platform.height / (box[3] - box[1])


def _faces(source: SourceImage, working: source_decode.WorkingImage) -> list[Box]:
    """Faces in source pixels, largest first: the box recorded upstream, else those detected locally."""
    if source.face_box is not None:
        x, y, w, h = source.face_box
        return [(x, y, x + w, y + h)]
    to_source = working.source_size[0] / working.image.width
    faces = detect_faces(working.image)  # it sizes its own working copy
    return [
        (f.x * to_source, f.y * to_source, (f.x + f.width) * to_source, (f.y + f.height) * to_source)
        for f in faces
        if f.area >= _COMPANION_FACE_AREA * faces[0].area
    ]


def _plan(size: tuple[int, int], platform: Platform, faces: list[Box], detail: np.ndarray | None) -> CropPlan:
    """Keep every sizeable face in frame when they fit together (group shots have several), else the largest alone."""
    if len(faces) > 1:
        left, top, right, bottom = zip(*faces, strict=True)
        union = (min(left), min(top), max(right), max(bottom))
        plan = plan_crop(size, platform, union)
        if plan.face_kept:
            return plan
    return plan_crop(size, platform, faces[0] if faces else None, detail)


def _render_one(
    working: source_decode.WorkingImage,
    platform: Platform,
    plan: CropPlan,
    face: Box | None,
    settings: ExportSettings,
    source: SourceImage,
    xmp: bytes,
) -> Rendered:
    scale = working.scale
    box = tuple(value * scale for value in plan.box)
    image = working.image.resize(platform.size, Image.Resampling.LANCZOS, box=box, reducing_gap=_REDUCING_GAP)
    watermark_box = None
    if settings.watermark is not None:
        watermark_box = stamp(image, settings.watermark, platform.ui_top, platform.ui_bottom)
    if source.label.dry_run:
        # The stand-in draws its own mark, but a crop can cut it off: every export says it again.
        stamp(image, DRY_RUN_BANNER, platform.ui_top, platform.ui_bottom)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=settings.quality, progressive=True, optimize=True, xmp=xmp)
    jpeg = buffer.getvalue()
    if settings.c2pa is not None:
        title = f"{PurePosixPath(source.name).stem} {platform.width}x{platform.height}"
        jpeg = sign_jpeg(jpeg, source.label, title, settings.c2pa)
    return Rendered(
        platform=platform.name,
        jpeg=jpeg,
        width=image.width,
        height=image.height,
        plan=plan,
        face_box=_to_output(face, plan.box, platform) if face is not None else None,
        watermark_box=watermark_box,
    )


def _to_output(face: Box, crop: Box, platform: Platform) -> Box:
    factor = platform.width / (crop[2] - crop[0])
    return tuple((face[i] - crop[i % 2]) * factor for i in range(4))
