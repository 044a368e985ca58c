"""A stand-in for the SDXL + LoRA renderer (simulated executors and tests): deterministic, labelled images whose
likeness follows the checkpoint's training step in a known way, so checkpoint selection runs end to end.

- Every image is a prompt- and seed-dependent scene (gradient, shapes, face position and size) with the
  model's reference face pasted in, so different prompts give different pictures.
- Underfit: the face is blended with noise; its weight is 0 up to NO_LIKENESS_STEP and rises with the
  square of the progress to 1 at FULL_LIKENESS_STEP (500 -> 0.25: hardly a face; 750 -> the face).
- Overfit: from OVERFIT_START_STEP the whole picture fades into a copy of one training photo (chosen by the
  seed, the same for every prompt), complete at FULL_COPY_STEP: "the same picture every time".
- No LoRA: no likeness at all (noise where the face would be). A LoRA without a step: full likeness.
The step comes from the LoRA file's `ss_steps` metadata, else its `-stepNNNNNNNN` name.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from modelcrew_assets.face_detection import largest_face
from modelcrew_assets.worker.safetensors_header import SafetensorsError, read_header

NO_LIKENESS_STEP = 250
FULL_LIKENESS_STEP = 750
OVERFIT_START_STEP = 1000
FULL_COPY_STEP = 1250
_STEP_IN_NAME = re.compile(r"-step(\d{8})\.safetensors$")


def lora_step(path: Path | None) -> int | None:
    """The training step a LoRA file was saved at (ss_steps metadata, else its file name), or None."""
    if path is None:
        return None
    try:
        steps = read_header(path).metadata.get("ss_steps", "")
    except (OSError, SafetensorsError):
        steps = ""
    if steps.isdigit():
        return int(steps)
    match = _STEP_IN_NAME.search(path.name)
    return int(match.group(1)) if match else None


def likeness(step: int | None, has_lora: bool) -> float:
    if not has_lora:
        return 0.0
    if step is None:
        return 1.0
    return float(np.clip((step - NO_LIKENESS_STEP) / (FULL_LIKENESS_STEP - NO_LIKENESS_STEP), 0.0, 1.0)) ** 2


def copy_weight(step: int | None) -> float:
    if step is None:
        return 0.0
    return float(np.clip((step - OVERFIT_START_STEP) / (FULL_COPY_STEP - OVERFIT_START_STEP), 0.0, 1.0))


@dataclass(frozen=True)
class StandInRequest:
    prompt: str
    seed: int
    width: int
    height: int
    lora_weight: float
    step: int | None
    has_lora: bool


class StandInGenerator:
    """Holds the reference face crop and the training photos for a whole job list."""

    name = "stand-in"

    def __init__(self, faces: Sequence[Image.Image], training: Sequence[Image.Image]):
        if not faces:
            raise ValueError(
                "the stand-in generator needs at least one reference face image; upload the model's face photo "
                "to uploads/<model>/face/"
            )
        face = faces[0].convert("RGB")
        box = largest_face(face)
        if box is not None:
            pad_x, pad_y = box.width // 4, box.height // 4
            face = face.crop(
                (
                    max(0, box.x - pad_x),
                    max(0, box.y - pad_y),
                    min(face.width, box.x + box.width + pad_x),
                    min(face.height, box.y + box.height + pad_y),
                )
            )
        self.face = face
        self.training = [image.convert("RGB") for image in training]

    def render(self, request: StandInRequest) -> Image.Image:
        rng = np.random.default_rng(_seed_of(request.prompt, request.seed))
        size = (request.width, request.height)
        image = _scene(rng, size)
        weight = likeness(request.step, request.has_lora) * max(0.0, min(1.0, request.lora_weight))
        side = int(min(size) * rng.uniform(0.38, 0.5))
        face = ImageOps.fit(self.face, (side, side))
        noise = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
        x = int(rng.uniform(0.1, 0.9) * (size[0] - side))
        y = int(rng.uniform(0.1, 0.6) * (size[1] - side))
        image.paste(Image.blend(noise, face, weight), (x, y))
        copy = copy_weight(request.step) if request.has_lora else 0.0
        if copy > 0 and self.training:
            photo = ImageOps.fit(self.training[request.seed % len(self.training)], size)
            image = Image.blend(image, photo, copy)
        label = f"stand-in | step {request.step if request.step is not None else '-'} | seed {request.seed}"
        font = ImageFont.load_default(size=max(10, min(size) // 40))
        ImageDraw.Draw(image).text(
            (8, 6), label, fill=(255, 255, 255), font=font, stroke_width=1, stroke_fill=(0, 0, 0)
        )
        return image


def _seed_of(prompt: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{prompt}\x00{seed}".encode()).digest()[:8], "big")


def _scene(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A gradient between two random colours in a random direction, with a few random shapes."""
    width, height = size
    first, second = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:64, 0:64] / 63.0
    ramp = xs * np.cos(angle) + ys * np.sin(angle)
    ramp = (ramp - ramp.min()) / max(1e-9, np.ptp(ramp))
    pixels = first[None, None, :] * (1 - ramp[..., None]) + second[None, None, :] * ramp[..., None]
    # A smooth gradient loses nothing when drawn small and scaled up; it is much faster at 1024.
    image = Image.fromarray(pixels.astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 7))):
        x0, y0 = int(rng.uniform(0, width)), int(rng.uniform(0, height))
        radius = int(rng.uniform(0.05, 0.25) * min(size))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse((x0 - radius, y0 - radius, x0 + radius, y0 + radius), fill=colour)
    return image
