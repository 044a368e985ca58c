"""Local face detection with OpenCV's Haar cascade (BSD-licensed, shipped inside opencv-python-headless,
commercial use allowed). Good enough to find and frame a face; not an identity model."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

# Detect on a downscaled copy: Haar cost grows with pixels, and faces worth keeping are not tiny.
_DETECT_MAX_SIDE = 1024


@dataclass(frozen=True)
class FaceBox:
    x: int
    y: int
    width: int
    height: int

    @property
    def area(self) -> int:
        return self.width * self.height

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.width, self.height)


# One classifier per thread: a CascadeClassifier is not thread-safe (shared, it corrupts the heap).
_per_thread = threading.local()


def _cascade() -> cv2.CascadeClassifier:
    cascade = getattr(_per_thread, "cascade", None)
    if cascade is None:
        cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        if cascade.empty():
            raise RuntimeError("OpenCV's frontal-face Haar cascade could not be loaded")
        _per_thread.cascade = cascade
    return cascade


def detect_faces(image: Image.Image, min_size_fraction: float = 0.06) -> list[FaceBox]:
    """Faces in the image, largest first, in the image's own pixel coordinates."""
    scale = min(1.0, _DETECT_MAX_SIDE / max(image.size))
    small = image.convert("L")
    if scale < 1.0:
        small = small.resize((round(image.width * scale), round(image.height * scale)))
    gray = cv2.equalizeHist(np.asarray(small))
    min_side = max(24, int(min(small.size) * min_size_fraction))
    found = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    boxes = [
        FaceBox(round(x / scale), round(y / scale), round(w / scale), round(h / scale)) for x, y, w, h in found
    ]
    return sorted(boxes, key=lambda box: box.area, reverse=True)


def prominent_faces(image: Image.Image, relative_side: float = 0.4) -> list[FaceBox]:
    """Faces at least `relative_side` of the largest face's side: the ones a viewer (or a LoRA) notices.
    Haar's usual false positives are small patches of texture next to a real face, and this drops them."""
    faces = detect_faces(image)
    return [box for box in faces if faces and box.width >= relative_side * faces[0].width]


def largest_face(image: Image.Image) -> FaceBox | None:
    faces = detect_faces(image)
    return faces[0] if faces else None
