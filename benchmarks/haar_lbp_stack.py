"""The face stack modelcrew used before dlib, kept only as benchmarks/face_models.py's baseline: OpenCV's
frontal-face Haar cascade (with the same downscale, equalization and prominence rule) and the weight-free
lbp-grid-v1 embedder (uniform-LBP histograms on a 6x6 grid of the 64x64 face crop, mirror-averaged)."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageOps

NAME = "haar + lbp-grid-v1"
LBP_BASELINE = 0.70  # its cosine for "no likeness"
_DETECT_MAX_SIDE = 1024
_EMBED_DETECT_SIDE = 512


@lru_cache(maxsize=1)
def _cascade() -> cv2.CascadeClassifier:
    return cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")


def detect_faces(image: Image.Image, min_size_fraction: float = 0.06) -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) boxes, largest first."""
    scale = min(1.0, _DETECT_MAX_SIDE / max(image.size))
    small = image.convert("L")
    if scale < 1.0:
        small = small.resize((round(image.width * scale), round(image.height * scale)))
    gray = cv2.equalizeHist(np.asarray(small))
    min_side = max(24, int(min(small.size) * min_size_fraction))
    found = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    boxes = [(round(x / scale), round(y / scale), round(w / scale), round(h / scale)) for x, y, w, h in found]
    return sorted(boxes, key=lambda box: box[2] * box[3], reverse=True)


def prominent_faces(image: Image.Image, relative_side: float = 0.4) -> list[tuple[int, int, int, int]]:
    faces = detect_faces(image)
    return [box for box in faces if box[2] >= relative_side * faces[0][2]]


@lru_cache(maxsize=1)
def _uniform_lbp_table() -> np.ndarray:
    table = np.full(256, 58, np.uint8)
    index = 0
    for code in range(256):
        bits = [(code >> i) & 1 for i in range(8)]
        if sum(bits[i] != bits[(i + 1) % 8] for i in range(8)) <= 2:
            table[code] = index
            index += 1
    return table


def _lbp_codes(gray: np.ndarray) -> np.ndarray:
    pixels = gray.astype(np.int16)
    centre = pixels[1:-1, 1:-1]
    codes = np.zeros(centre.shape, np.uint8)
    height, width = pixels.shape
    for bit, (dy, dx) in enumerate(((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))):
        codes |= (pixels[1 + dy : height - 1 + dy, 1 + dx : width - 1 + dx] >= centre).astype(np.uint8) << bit
    return _uniform_lbp_table()[codes]


def _histograms(crop: Image.Image, side: int = 64, grid: int = 6) -> np.ndarray:
    gray = cv2.equalizeHist(np.asarray(crop.convert("L").resize((side, side), Image.Resampling.BILINEAR)))
    codes = _lbp_codes(gray)
    cell = codes.shape[0] // grid
    cells = [codes[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell] for r in range(grid) for c in range(grid)]
    vector = np.sqrt(np.concatenate([np.bincount(block.ravel(), minlength=59) / block.size for block in cells]))
    return vector / np.linalg.norm(vector)


def embed(image: Image.Image) -> np.ndarray | None:
    """Unit-length lbp-grid-v1 embedding of the largest Haar face, or None."""
    scale = min(1.0, _EMBED_DETECT_SIDE / max(image.size))
    small = image if scale == 1.0 else image.resize((round(image.width * scale), round(image.height * scale)))
    faces = detect_faces(small)
    if not faces:
        return None
    x, y, w, h = (value / scale for value in faces[0])
    crop = image.crop((round(x), round(y), round(x + w), round(y + h)))
    vector = _histograms(crop) + _histograms(ImageOps.mirror(crop))
    return vector / np.linalg.norm(vector)
