"""Face fixtures built from scikit-image's bundled images (no download): one-person portraits over busy
backgrounds, a wide panorama, a small portrait, and LFW faces photographed slightly differently.

The person is always scikit-image's astronaut (Eileen Collins, NASA, public domain), head and shoulders,
blended in with a soft oval mask; the backgrounds are random colour speckle at several grain sizes and
scikit-image's textured photos (coffee, a cat, a rocket, a microscope slide, the Hubble deep field, ...).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps
from skimage import data

# The astronaut's head and shoulders (her face spans about x 175-265, y 76-166 of the 512 px original).
_HEAD_AND_SHOULDERS = (60, 0, 420, 360)
_PHOTO_BACKGROUNDS = (
    "coffee",
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "grass",
    "gravel",
    "brick",
)
_SPECKLE_GRAINS = (3, 6, 12)


def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut())


def speckle(size: tuple[int, int], grain: int, seed: int) -> Image.Image:
    """Random colour cells of `grain` px: the busiest background a detector meets."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 256, (size[1] // grain + 1, size[0] // grain + 1, 3), dtype=np.uint8)
    big = Image.fromarray(cells).resize((cells.shape[1] * grain, cells.shape[0] * grain), Image.Resampling.NEAREST)
    return big.crop((0, 0, *size))


def photo_background(name: str, size: tuple[int, int]) -> Image.Image:
    return Image.fromarray(getattr(data, name)()).convert("RGB").resize(size, Image.Resampling.BICUBIC)


def paste_person(background: Image.Image, height: int, x: int) -> Image.Image:
    """The astronaut's head and shoulders, `height` px tall, standing on the bottom edge at `x`."""
    person = astronaut().crop(_HEAD_AND_SHOULDERS).resize((height, height), Image.Resampling.LANCZOS)
    mask = Image.new("L", person.size, 0)
    ImageDraw.Draw(mask).ellipse((height * 0.05, -height * 0.1, height * 0.95, height * 1.4), fill=255)
    composite = background.copy()
    composite.paste(person, (x, background.height - height), mask.filter(ImageFilter.GaussianBlur(8)))
    return composite


def one_person_photos() -> list[tuple[str, Image.Image]]:
    """12 one-person photos: 3 speckle grains and 9 textured photos, square and 4:3, the person at
    different sizes and places."""
    backgrounds = [
        (f"speckle-{grain}px", lambda size, grain=grain: speckle(size, grain, grain)) for grain in _SPECKLE_GRAINS
    ]
    backgrounds += [(name, lambda size, name=name: photo_background(name, size)) for name in _PHOTO_BACKGROUNDS]
    photos = []
    for index, (name, make) in enumerate(backgrounds):
        size = (1024, 1024) if index % 2 == 0 else (1200, 900)
        height = 560 + 40 * (index % 4)
        x = (size[0] - height) // 2 + (-150, 150, 0, -80)[index % 4]
        photos.append((name, paste_person(make(size), height, x)))
    return photos


def panorama() -> Image.Image:
    """6000x1000: speckle under a sky-to-ground gradient, the person 500 px tall (a face of ~130 px) near
    the right end."""
    gradient = np.linspace(60, 200, 1000, dtype=np.float32)[:, None, None] * np.ones((1, 6000, 3), np.float32)
    texture = np.asarray(speckle((6000, 1000), 6, 1), np.float32)
    background = Image.fromarray(np.clip(0.6 * gradient + 0.4 * texture, 0, 255).astype(np.uint8))
    return paste_person(background, 500, 4200)


def small_portrait() -> Image.Image:
    """The astronaut at 300x300: a face of about 55 px."""
    return astronaut().resize((300, 300), Image.Resampling.LANCZOS)


def lfw_faces() -> np.ndarray:
    """scikit-image's LFW subset: 100 faces (25x25 grey, 0-255); it has no identity labels."""
    return (data.lfw_subset()[:100] * 255).astype(np.uint8)


def lfw_photo(pixels: np.ndarray, side: int = 100, pad: int = 25) -> Image.Image:
    """An LFW face enlarged to `side` px on a grey border, as a detector would meet it in a photo."""
    image = Image.fromarray(pixels).resize((side, side), Image.Resampling.BICUBIC)
    return ImageOps.expand(image, border=pad, fill=128).convert("RGB")


def photographed_again(image: Image.Image, count: int) -> list[Image.Image]:
    """The same photo taken slightly differently: crop, mirror, brightness, rotation, blur."""
    out = []
    for index in range(count):
        width, height = image.size
        shift = 0.04 * (index % 3)
        varied = image.crop(
            (int(width * shift), int(height * shift / 2), int(width * (1 - shift * 0.7)), int(height * (1 - shift)))
        )
        if index % 2:
            varied = ImageOps.mirror(varied)
        varied = ImageEnhance.Brightness(varied).enhance(0.8 + 0.1 * (index % 5))
        varied = varied.rotate((-6, -3, 0, 3, 6)[index % 5], resample=Image.Resampling.BILINEAR)
        if index % 4 == 3:
            varied = varied.filter(ImageFilter.GaussianBlur(1))
        out.append(varied)
    return out
