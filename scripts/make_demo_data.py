"""Regenerates modelcrew_assets/demo/ (the demo model `modelcrew demo` uploads) from scikit-image's
astronaut: a public-domain NASA portrait. Needs the dev extra (scikit-image); the output is committed so
installs without it still have the demo. Run: .venv/bin/python scripts/make_demo_data.py"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps
from skimage import data

DEMO = Path(__file__).resolve().parent.parent / "modelcrew_assets" / "demo"
MIN_SHORT_SIDE = 1024
QUALITY = 88


def upscale(image: Image.Image) -> Image.Image:
    scale = MIN_SHORT_SIDE / min(image.size)
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)


def rotated(image: Image.Image, degrees: float) -> Image.Image:
    """Rotate, then crop away the empty corners the rotation leaves."""
    turned = image.rotate(degrees, resample=Image.Resampling.BICUBIC)
    margin = round(image.width * 0.06)
    return turned.crop((margin, margin, image.width - margin, image.height - margin))


def variants(astronaut: Image.Image) -> dict[str, Image.Image]:
    portrait = astronaut.crop((100, 0, 380, 350))
    return {
        "full-frame.jpg": astronaut,
        "mirrored.jpg": ImageOps.mirror(astronaut),
        "tilted-left.jpg": rotated(astronaut, 5),
        "tilted-right-mirrored.jpg": ImageOps.mirror(rotated(astronaut, -4)),
        "warm-tone.jpg": ImageEnhance.Color(astronaut).enhance(1.35).point(lambda v: min(255, int(v * 1.06))),
        "muted-tone.jpg": ImageEnhance.Color(astronaut).enhance(0.55),
        "portrait-crop.jpg": portrait,
        "bright-portrait.jpg": ImageEnhance.Contrast(
            ImageEnhance.Brightness(ImageOps.mirror(portrait)).enhance(1.12)
        ).enhance(1.1),
    }


MANIFEST = """\
# Demo model for `modelcrew demo`. Every image here is derived from scikit-image's "astronaut"
# (Eileen Collins, NASA): a public-domain portrait. Regenerate with scripts/make_demo_data.py.
[model]
name = "demo"
trigger = "mcdemo"
class_word = "woman"

[consent]
attested_by = "studio@modelcrew.example"
basis = "licensed"
"""


def main() -> None:
    astronaut = Image.fromarray(data.astronaut())
    upscale(astronaut.crop((120, 10, 340, 230))).save(DEMO / "face.jpg", quality=QUALITY, optimize=True)
    for name, image in variants(astronaut).items():
        upscale(image).convert("RGB").save(DEMO / "targets" / name, quality=QUALITY, optimize=True)
    (DEMO / "model.toml").write_text(MANIFEST)


if __name__ == "__main__":
    main()
