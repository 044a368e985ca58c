"""The evaluation grid a person compares checkpoints by: rows = checkpoints, columns = prompt/seed. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont, ImageOps

CELL = 256
LABEL_WIDTH = 150
HEADER_HEIGHT = 36
BACKGROUND = (24, 24, 24)
MISSING = (70, 20, 20)
CHOSEN = (40, 200, 90)


@dataclass(frozen=True)
class GridRow:
    label: str  # e.g. "step 750"
    note: str  # e.g. "id 0.90 mem 0.10"
    images: Sequence[Image.Image | None]  # one per column; None: the sample is missing
    chosen: bool = False


def cell_box(row: int, column: int, cell: int = CELL) -> tuple[int, int, int, int]:
    """Pixel box (left, top, right, bottom) of a grid cell."""
    left = LABEL_WIDTH + column * cell
    top = HEADER_HEIGHT + row * cell
    return left, top, left + cell, top + cell


def grid_image(rows: Sequence[GridRow], columns: Sequence[str], cell: int = CELL) -> Image.Image:
    """Each sample fitted into its cell; the chosen row framed in green; missing samples dark red."""
    width = LABEL_WIDTH + max(1, len(columns)) * cell
    height = HEADER_HEIGHT + max(1, len(rows)) * cell
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font, small = ImageFont.load_default(size=18), ImageFont.load_default(size=14)
    for column, label in enumerate(columns):
        left, _, _, _ = cell_box(0, column, cell)
        draw.text((left + 6, 8), label, fill=(230, 230, 230), font=font)
    for row_index, row in enumerate(rows):
        _, top, _, _ = cell_box(row_index, 0, cell)
        draw.text((8, top + 8), row.label, fill=CHOSEN if row.chosen else (230, 230, 230), font=font)
        if row.chosen:
            draw.text((8, top + 30), "chosen", fill=CHOSEN, font=font)
        draw.text((8, top + 56), row.note, fill=(170, 170, 170), font=small)
        for column in range(len(columns)):
            box = cell_box(row_index, column, cell)
            image = row.images[column] if column < len(row.images) else None
            if image is None:
                draw.rectangle((box[0] + 2, box[1] + 2, box[2] - 3, box[3] - 3), fill=MISSING)
                continue
            thumb = ImageOps.contain(image.convert("RGB"), (cell - 4, cell - 4))
            sheet.paste(thumb, (box[0] + (cell - thumb.width) // 2, box[1] + (cell - thumb.height) // 2))
        if row.chosen:
            draw.rectangle((0, top, width - 1, top + cell - 1), outline=CHOSEN, width=3)
    return sheet
