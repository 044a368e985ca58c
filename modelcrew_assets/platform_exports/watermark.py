"""Watermarks: a text (Pillow's bundled Aileron font, SIL OFL) or a PNG logo, scaled to the image width so
it reads the same on every platform, placed at a corner or the centre and kept out of the UI zones."""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from PIL import Image, ImageDraw, ImageFont

from modelcrew_assets.imaging import ImageInputError

Position = Literal["top-left", "top-right", "bottom-left", "bottom-right", "center"]
_REFERENCE_SIZE = 100
_SHADOW_OPACITY = 0.45


@dataclass(frozen=True)
class Watermark:
    text: str | None = None
    logo_png: bytes | None = None  # wins over the text when both are set
    position: Position = "bottom-right"
    opacity: float = 0.7
    margin: float = 0.03  # fraction of the image width
    width: float = 0.22  # watermark width as a fraction of the image width


def stamp(
    image: Image.Image, watermark: Watermark, ui_top: float = 0.0, ui_bottom: float = 0.0
) -> tuple[int, int, int, int]:
    """Draw the watermark onto `image` in place; returns its box (left, top, right, bottom)."""
    target_width = max(8, round(image.width * watermark.width))
    if watermark.logo_png is not None:
        colour, mask = _logo(watermark.logo_png, target_width, watermark.opacity)
    else:
        colour, mask = _text(watermark.text or "", target_width, watermark.opacity)
    margin = round(image.width * watermark.margin)
    left, top = _place(image.size, mask.size, watermark.position, margin, ui_top, ui_bottom)
    if watermark.logo_png is None:
        # A soft dark shadow keeps white text legible on bright skies and skin.
        shadow = mask.point(lambda value: round(value * _SHADOW_OPACITY))
        offset = max(1, mask.height // 20)
        image.paste((0, 0, 0), (left + offset, top + offset), shadow)
    image.paste(colour, (left, top), mask)
    return (left, top, left + mask.width, top + mask.height)


def _place(
    size: tuple[int, int], mark: tuple[int, int], position: Position, margin: int, ui_top: float, ui_bottom: float
) -> tuple[int, int]:
    width, height = size
    top_edge = round(height * ui_top) + margin
    bottom_edge = height - round(height * ui_bottom) - margin - mark[1]
    if position == "center":
        return (width - mark[0]) // 2, (height - mark[1]) // 2
    vertical, horizontal = position.split("-")
    x = margin if horizontal == "left" else width - margin - mark[0]
    y = top_edge if vertical == "top" else bottom_edge
    return max(0, x), max(0, y)


@lru_cache(maxsize=16)
def _text(text: str, target_width: int, opacity: float) -> tuple[tuple[int, int, int], Image.Image]:
    if not text.strip():
        raise ValueError("watermark text is empty; set [export].watermark or remove it")
    reference = ImageFont.load_default(size=_REFERENCE_SIZE).getlength(text)
    font = ImageFont.load_default(size=max(6, round(_REFERENCE_SIZE * target_width / reference)))
    left, top, right, bottom = font.getbbox(text)
    mask = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(mask).text((-left, -top), text, fill=round(255 * opacity), font=font)
    return (255, 255, 255), mask


@lru_cache(maxsize=16)
def _logo(png: bytes, target_width: int, opacity: float) -> tuple[Image.Image, Image.Image]:
    try:
        logo = Image.open(io.BytesIO(png))
        logo.load()
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageInputError(f"watermark logo: not a readable PNG ({error}); upload a PNG with transparency") from None
    logo = logo.convert("RGBA")
    height = max(1, round(logo.height * target_width / logo.width))
    logo = logo.resize((target_width, height), Image.Resampling.LANCZOS)
    mask = logo.getchannel("A").point(lambda value: round(value * opacity))
    return logo.convert("RGB"), mask
