"""The loss curve as a picture (Pillow only): kohya's avr_loss per step, checkpoints marked."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw

WIDTH, HEIGHT, MARGIN = 800, 400, 48


def loss_curve(points: Sequence[tuple[int, float]], checkpoint_steps: Sequence[int]) -> Image.Image:
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = MARGIN, MARGIN // 2, WIDTH - MARGIN // 2, HEIGHT - MARGIN
    draw.rectangle((left, top, right, bottom), outline=(120, 120, 120))
    if not points:
        draw.text((left + 10, top + 10), "no loss values were reported", fill="black")
        return image
    steps = [step for step, _ in points]
    losses = [loss for _, loss in points]
    first, last = min(steps), max(max(steps), max(checkpoint_steps, default=0))
    low, high = min(losses), max(losses)
    span_x, span_y = max(1, last - first), (high - low) or 1.0

    def x(step: float) -> float:
        return left + (step - first) / span_x * (right - left)

    def y(loss: float) -> float:
        return bottom - (loss - low) / span_y * (bottom - top)

    for step in checkpoint_steps:
        draw.line((x(step), top, x(step), bottom), fill=(210, 210, 230))
        draw.text((x(step) - 12, bottom + 4), str(step), fill=(90, 90, 90))
    draw.line([(x(s), y(v)) for s, v in points], fill=(200, 40, 40), width=2)
    draw.text((4, top), f"{high:.4f}", fill="black")
    draw.text((4, bottom - 12), f"{low:.4f}", fill="black")
    draw.text((left + 6, top + 4), "avr_loss by step", fill="black")
    return image
