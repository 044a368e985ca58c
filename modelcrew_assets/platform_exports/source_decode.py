"""Decode a source photo once, at the smallest scale the exports need, into an upright sRGB RGB image.

JPEG decoding uses draft mode: libjpeg scales by 1/2, 1/4 or 1/8 while decoding (DCT scaling), so a
24 MP photo headed for 1080 px outputs is never decoded at full size. Formats: JPEG (and MPO, the
multi-picture JPEG phones write), PNG, WebP and TIFF (16-bit masters); imaging.decode_image stays strict
for uploads, this path is for images the pipeline made or a person exported for posting.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageCms, ImageOps

from modelcrew_assets.imaging import ImageInputError, open_image

SOURCE_FORMATS = {"JPEG", "MPO", "PNG", "WEBP", "TIFF"}
# Below this (shorter side) a photo would be blown up more than ~4x for a 1080 px post.
MIN_SOURCE_SIDE = 256
_ROTATED_ORIENTATIONS = {5, 6, 7, 8}
_SIXTEEN_BIT_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N"}


@dataclass(frozen=True)
class WorkingImage:
    image: Image.Image  # upright RGB, sRGB
    source_size: tuple[int, int]  # upright size at full resolution

    @property
    def scale(self) -> float:
        """Working pixels per source pixel."""
        return self.image.width / self.source_size[0]


def probe(data: bytes, name: str, min_side: int = MIN_SOURCE_SIDE) -> tuple[int, int]:
    """The upright full-resolution size, from the header alone; rejects what cannot be exported."""
    image = _open(data, name)
    width, height = image.size
    if _orientation(image) in _ROTATED_ORIENTATIONS:
        width, height = height, width
    if min(width, height) < min_side:
        raise ImageInputError(
            f"{name}: {width}x{height} is too small to export (the shorter side must be at least "
            f"{min_side} px); use a larger original"
        )
    return width, height


def decode(data: bytes, name: str, scale: float) -> WorkingImage:
    """Decode at no less than `scale` of full resolution (JPEG only goes below 1), upright, RGB, sRGB."""
    image = _open(data, name)
    rotated = _orientation(image) in _ROTATED_ORIENTATIONS
    source_size = (image.height, image.width) if rotated else image.size
    if scale < 1.0 and image.format in ("JPEG", "MPO"):
        image.draft("RGB", (math.ceil(image.width * scale), math.ceil(image.height * scale)))
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageInputError(f"{name}: the image is damaged or truncated ({error}); export it again") from None
    icc = image.info.get("icc_profile")
    ImageOps.exif_transpose(image, in_place=True)
    image = _to_rgb(image, name)
    if icc:
        image = _to_srgb(image, icc)
    return WorkingImage(image if image.mode == "RGB" else image.convert("RGB"), source_size)


def _open(data: bytes, name: str) -> Image.Image:
    return open_image(data, name, SOURCE_FORMATS)


def _orientation(image: Image.Image) -> int:
    return image.getexif().get(0x0112, 1)


def _to_rgb(image: Image.Image, name: str) -> Image.Image:
    if image.mode in _SIXTEEN_BIT_MODES:
        # Pillow's own I;16 -> L conversion clips at 255; scale the 16-bit range down instead.
        values = np.asarray(image, dtype=np.uint32)
        return Image.fromarray((values >> 8).clip(0, 255).astype(np.uint8), "L").convert("RGB")
    if image.mode == "F":
        raise ImageInputError(f"{name}: floating-point images are not supported; export it as 8- or 16-bit")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        # Transparent areas become white, the usual background of a social post.
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if image.mode == "CMYK":
        return image  # converted through its ICC profile when it has one, else by Pillow
    return image if image.mode == "RGB" else image.convert("RGB")


@lru_cache(maxsize=1)
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _to_srgb(image: Image.Image, icc: bytes) -> Image.Image:
    """Convert through the embedded profile; a profile that is sRGB already or unreadable is left as is."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if image.mode == "RGB" and "srgb" in ImageCms.getProfileDescription(profile).lower():
            return image
        return ImageCms.profileToProfile(image, profile, _srgb(), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError):
        return image.convert("RGB")
