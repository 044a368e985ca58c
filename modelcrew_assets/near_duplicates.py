"""Near-duplicate images by perceptual hash (dHash): shared by the swap and dataset quality checks. Pure.

dHash compares each pixel of a 9x8 grayscale thumbnail with its right neighbour, giving 64 bits that
survive resizing, recompression and small tone changes. Two images whose hashes differ in at most
`MAX_DISTANCE` bits look the same to a person (and to a LoRA trainer, which then over-weights them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image

HASH_SIZE = 8
MAX_DISTANCE = 6


@dataclass(frozen=True)
class NearDuplicatePair:
    first: str
    second: str
    distance: int

    def describe(self) -> str:
        return f"{self.first} ~ {self.second} (distance {self.distance})"


def dhash(image: Image.Image, hash_size: int = HASH_SIZE) -> int:
    """64-bit difference hash of an image (row-major, most significant bit first)."""
    thumb = image.convert("L").resize((hash_size + 1, hash_size), Image.Resampling.LANCZOS)
    pixels = np.asarray(thumb, dtype=np.int16)
    bits = (pixels[:, 1:] > pixels[:, :-1]).flatten()
    return int("".join("1" if bit else "0" for bit in bits), 2)


def hamming(first: int, second: int) -> int:
    return (first ^ second).bit_count()


def near_duplicate_pairs(
    hashes: Iterable[tuple[str, int]], max_distance: int = MAX_DISTANCE
) -> list[NearDuplicatePair]:
    """Every pair of named hashes within `max_distance` bits, in input order. O(n^2), fine for the
    hundreds of photos a dataset holds."""
    items = list(hashes)
    pairs = []
    for index, (first_name, first_hash) in enumerate(items):
        for second_name, second_hash in items[index + 1 :]:
            distance = hamming(first_hash, second_hash)
            if distance <= max_distance:
                pairs.append(NearDuplicatePair(first_name, second_name, distance))
    return pairs


def find_near_duplicates(
    images: Iterable[tuple[str, Image.Image]], max_distance: int = MAX_DISTANCE
) -> list[NearDuplicatePair]:
    """Named images -> the pairs that look alike."""
    return near_duplicate_pairs(((name, dhash(image)) for name, image in images), max_distance)
