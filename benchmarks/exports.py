"""Benchmark: platform_exports against a plain Pillow and a pyvips thumbnail baseline, same inputs, one run.

40 photos of 24 MP (6000x4000 JPEG: gradients + noise + a pasted portrait) -> the four built-in platforms.
- ours: the export core (draft decode, face-aware crops, watermark, XMP labels, progressive JPEG) across
  both cores, worker start-up included;
- Pillow baseline: open, full decode, centre crop, LANCZOS resize, save (one process, as a plain script);
- pyvips baseline: thumbnail_buffer(crop="centre") + jpegsave per platform (libvips' own threads).
Run: .venv/bin/python benchmarks/exports.py [--photos 40]
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import pyvips
from PIL import Image
from skimage import data

from modelcrew_assets.platform_exports.crop import largest_crop
from modelcrew_assets.platform_exports.labels import TRAINED_ALGORITHMIC_MEDIA, AiLabel
from modelcrew_assets.platform_exports.platforms import BUILTIN_PLATFORMS
from modelcrew_assets.platform_exports.pool import export_many
from modelcrew_assets.platform_exports.render import DEFAULT_JPEG_QUALITY, ExportSettings, SourceImage
from modelcrew_assets.platform_exports.watermark import Watermark

WIDTH, HEIGHT = 6000, 4000
PLATFORMS = tuple(BUILTIN_PLATFORMS.values())


def make_photos(count: int) -> list[bytes]:
    """Distinct photos: a gradient per photo, camera-like noise, the astronaut's portrait somewhere."""
    rng = np.random.default_rng(7)
    noise = [rng.integers(0, 80, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(4)]
    across = np.linspace(0, 175, WIDTH, dtype=np.float32)[None, :]
    down = np.linspace(0, 175, HEIGHT, dtype=np.float32)[:, None]
    face = Image.fromarray(data.astronaut()).resize((2400, 2400))
    photos = []
    for index in range(count):
        tilt = (index % 7) / 7
        pixels = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
        pixels[..., 0] = across
        pixels[..., 1] = down
        pixels[..., 2] = (across * tilt + down) / (1 + tilt)
        pixels += noise[index % 4]
        image = Image.fromarray(pixels)
        image.paste(face, (300 + (index * 337) % 3000, (index * 211) % 1600))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        photos.append(buffer.getvalue())
    return photos


def pillow_baseline(photos: list[bytes]) -> float:
    start = time.perf_counter()
    for photo in photos:
        image = Image.open(io.BytesIO(photo))
        image.load()
        for platform in PLATFORMS:
            crop_w, crop_h = largest_crop(image.width, image.height, platform.aspect)
            left, top = (image.width - crop_w) / 2, (image.height - crop_h) / 2
            out = image.crop((round(left), round(top), round(left + crop_w), round(top + crop_h)))
            out = out.resize(platform.size, Image.Resampling.LANCZOS)
            out.save(io.BytesIO(), format="JPEG", quality=DEFAULT_JPEG_QUALITY)
    return time.perf_counter() - start


def pyvips_baseline(photos: list[bytes]) -> float:
    start = time.perf_counter()
    for photo in photos:
        for platform in PLATFORMS:
            thumb = pyvips.Image.thumbnail_buffer(photo, platform.width, height=platform.height, crop="centre")
            thumb.jpegsave_buffer(Q=DEFAULT_JPEG_QUALITY)
    return time.perf_counter() - start


def ours(photos: list[bytes]) -> tuple[float, int, int]:
    settings = ExportSettings(PLATFORMS, watermark=Watermark(text="@blondie"))
    label = AiLabel(TRAINED_ALGORITHMIC_MEDIA, "blondie", "benchmark photo", ("benchmark",))
    sources = [SourceImage(f"photo-{index:02d}.jpg", photo, label) for index, photo in enumerate(photos)]
    start = time.perf_counter()
    outcomes = list(export_many(sources, settings, workers=2))
    elapsed = time.perf_counter() - start
    outputs = sum(len(outcome.rendered) for outcome in outcomes)
    faces = sum(1 for outcome in outcomes if outcome.rendered and outcome.rendered[0].plan.strategy == "face")
    return elapsed, outputs, faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2, help="mirrored rounds (A B C, C B A) cancel load drift")
    args = parser.parse_args()
    photos = make_photos(args.photos)
    print(
        f"inputs: {len(photos)} JPEG {WIDTH}x{HEIGHT}, {sum(map(len, photos)) / 1e6:.0f} MB; "
        f"platforms: {', '.join(p.name for p in PLATFORMS)}; {args.rounds} round(s)"
    )
    runs = {
        "ours": lambda: ours(photos),
        "pillow": lambda: pillow_baseline(photos),
        "pyvips": lambda: pyvips_baseline(photos),
    }
    totals = dict.fromkeys(runs, 0.0)
    for round_number in range(args.rounds):
        order = list(runs) if round_number % 2 == 0 else list(reversed(runs))
        for name in order:
            result = runs[name]()
            elapsed = result[0] if isinstance(result, tuple) else result
            totals[name] += elapsed
            detail = ""
            if name == "ours":
                detail = f" ({result[1]} exports, {result[2]}/{len(photos)} crops framed on a face)"
            print(f"round {round_number + 1}: {name:7s} {elapsed:6.1f} s{detail}")
    print(f"ours / Pillow baseline = {totals['ours'] / totals['pillow']:.2f} (must be <= 0.5)")
    print(f"ours / pyvips baseline = {totals['ours'] / totals['pyvips']:.2f} (must be <= 1.2)")


if __name__ == "__main__":
    main()
