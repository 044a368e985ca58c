"""Regenerates modelcrew_assets/demo/ (the demo model `modelcrew demo` uploads) from scikit-image's
bundled images: the astronaut (Eileen Collins, NASA, public domain) photographed "again" over scikit-image's
other photos and textures, so the demo has 17 distinct, sharp, one-face photos (what the quality gate
wants) and one deliberately bad one (two people) that the UI shows excluded with its reason.
Needs the dev extra (scikit-image); the output is committed so installs without it still have the demo.
Run: .venv/bin/python scripts/make_demo_data.py"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps
from skimage import data

from modelcrew_assets_tests.face_fixtures import paste_person, photo_background, speckle

DEMO = Path(__file__).resolve().parent.parent / "modelcrew_assets" / "demo"
MIN_SHORT_SIDE = 1024
QUALITY = 82
# (file name, background, canvas size, person height, x offset from centre, mirrored)
COMPOSITES = (
    ("coffee-shop.jpg", "coffee", (1365, 1024), 700, -260, False),
    ("with-the-cat.jpg", "chelsea", (1365, 1024), 640, 300, True),
    ("launch-day.jpg", "rocket", (1024, 1280), 720, 0, False),
    ("lab-bench.jpg", "immunohistochemistry", (1024, 1024), 600, -180, True),
    ("deep-field.jpg", "hubble_deep_field", (1024, 1024), 560, 200, False),
    ("clinic.jpg", "retina", (1365, 1024), 760, 120, True),
    ("meadow.jpg", "grass", (1024, 1280), 640, -120, False),
    ("gravel-path.jpg", "gravel", (1365, 1024), 600, -320, True),
    ("brick-wall.jpg", "brick", (1024, 1024), 680, 90, False),
    ("coin-collection.jpg", "coins", (1365, 1024), 660, 250, True),
    ("moonlight.jpg", "moon", (1024, 1024), 620, -200, False),
    ("reading-room.jpg", "page", (1365, 1024), 700, 0, True),
    ("clock-tower.jpg", "clock", (1024, 1280), 660, 160, False),
)
SPECKLES = (("street-market.jpg", 8, (1365, 1024), 620, 230), ("confetti.jpg", 12, (1024, 1024), 700, -140))


def upscale(image: Image.Image) -> Image.Image:
    scale = MIN_SHORT_SIDE / min(image.size)
    if scale <= 1:
        return image
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)


def rotated(image: Image.Image, degrees: float) -> Image.Image:
    """Rotate, then crop away the empty corners the rotation leaves."""
    turned = image.rotate(degrees, resample=Image.Resampling.BICUBIC)
    margin = round(image.width * 0.06)
    return turned.crop((margin, margin, image.width - margin, image.height - margin))


def composite(background: Image.Image, height: int, offset: int, mirrored: bool) -> Image.Image:
    x = (background.width - height) // 2 + offset
    photo = paste_person(background, height, x)
    return ImageOps.mirror(photo) if mirrored else photo


def variants(astronaut: Image.Image) -> dict[str, Image.Image]:
    photos = {
        "full-frame.jpg": astronaut,
        "tilted-left.jpg": ImageEnhance.Color(rotated(ImageOps.mirror(astronaut), 5)).enhance(0.6),
    }
    for name, background, size, height, offset, mirrored in COMPOSITES:
        photos[name] = composite(photo_background(background, size), height, offset, mirrored)
    for name, grain, size, height, offset in SPECKLES:
        photos[name] = composite(speckle(size, grain, grain), height, offset, False)
    # Deliberately bad: two people. The quality gate excludes it ("several faces") and the UI says so.
    pair = paste_person(photo_background("coffee", (1365, 1024)), 620, 40)
    photos["two-people.jpg"] = paste_person(ImageOps.mirror(pair), 600, 80)
    return photos


MANIFEST = """\
# Demo model for `modelcrew demo`. Every photo shows scikit-image's "astronaut" (Eileen Collins, NASA): a
# public-domain portrait, over scikit-image's bundled photos and textures. two-people.jpg is bad on purpose:
# swapped_faces shows it excluded ("several faces"). Regenerate with scripts/make_demo_data.py.
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
    targets = DEMO / "targets"
    for stale in targets.glob("*.jpg"):
        stale.unlink()
    for name, image in variants(astronaut).items():
        upscale(image).convert("RGB").save(targets / name, quality=QUALITY, optimize=True)
    (DEMO / "model.toml").write_text(MANIFEST)


if __name__ == "__main__":
    main()
