"""Pure image helpers shared by every stage: safe decoding with clear errors, and UI previews."""

from __future__ import annotations

import base64
import io
import math
import warnings
from collections.abc import Collection, Sequence

from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

# Pillow's own guard against decompression bombs; above this many pixels an upload is refused.
MAX_IMAGE_PIXELS = 100_000_000
SUPPORTED_FORMATS = {"JPEG", "PNG", "WEBP"}


class ImageInputError(ValueError):
    """An input image that cannot be used; the message names it and says what to do."""


def open_image(data: bytes, name: str, formats: Collection[str] = SUPPORTED_FORMATS) -> Image.Image:
    """Open (header only, nothing decoded yet) with clear errors for empty, unreadable, unsupported and
    oversized (decompression bomb) inputs; callers decide how much to decode."""
    readable = ", ".join(sorted(formats))
    if not data:
        raise ImageInputError(f"{name}: the file is empty (0 bytes); upload the photo again")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageInputError(f"{name}: not an image Pillow can read; use {readable}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        image = None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageInputError(f"{name}: the image is damaged or truncated ({error}); export it again") from None
    if image is None or image.width * image.height > MAX_IMAGE_PIXELS:
        raise ImageInputError(
            f"{name}: refused as a possible decompression bomb (more than {MAX_IMAGE_PIXELS:,} pixels); "
            "resize it below that and upload it again"
        )
    if image.format not in formats:
        raise ImageInputError(f"{name}: {image.format} is not supported; convert it to {readable}")
    return image


def decode_image(data: bytes, name: str) -> Image.Image:
    """Decode fully (not just the header), apply EXIF orientation and return an RGB image."""
    image = open_image(data, name)
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageInputError(f"{name}: the image is damaged or truncated ({error}); export it again") from None
    image = ImageOps.exif_transpose(image)
    return image.convert("RGB") if image.mode != "RGB" else image


def encode_jpeg(image: Image.Image, quality: int = 92) -> bytes:
    """Baseline RGB JPEG without metadata (EXIF, GPS and ICC are not carried over)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def contact_sheet(
    images: Sequence[Image.Image], columns: int = 5, cell: int = 192, labels: Sequence[str] | None = None
) -> Image.Image:
    """A grid of thumbnails, in order, each fitted into a square cell on a neutral background."""
    columns = max(1, min(columns, len(images) or 1))
    rows = max(1, math.ceil(len(images) / columns))
    sheet = Image.new("RGB", (columns * cell, rows * cell), (32, 32, 32))
    for index, image in enumerate(images):
        thumb = ImageOps.contain(image.convert("RGB"), (cell - 4, cell - 4))
        x = (index % columns) * cell + (cell - thumb.width) // 2
        y = (index // columns) * cell + (cell - thumb.height) // 2
        sheet.paste(thumb, (x, y))
        if labels:
            ImageDraw.Draw(sheet).text(((index % columns) * cell + 4, (index // columns) * cell + 2), labels[index])
    return sheet


def markdown_image(image: Image.Image, alt: str, max_side: int = 960, quality: int = 80) -> str:
    """Inline markdown for a MetadataValue.md preview: the UI cannot read private buckets, so the
    (downscaled) image travels inside the metadata as a data URI."""
    preview = ImageOps.contain(image.convert("RGB"), (max_side, max_side))
    buffer = io.BytesIO()
    preview.save(buffer, format="JPEG", quality=quality)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"![{alt}](data:image/jpeg;base64,{encoded})"
