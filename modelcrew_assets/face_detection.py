"""Local face detection with dlib's HOG face detector (dlib: Boost Software License; the detector's filters
are built into dlib, trained on Labeled Faces in the Wild images). Where the faces in a photo are; who
they are is scoring.py's question, asked of the same detections.

The detector scans 80x80 px windows over an image pyramid, so it sees faces down to about 80 px. Every
image is searched at one working size, a short side of 1024 px: big photos are shrunk (the cost grows with
pixels), small ones enlarged (a face of 8% of the short side is then ~80 px), and a panorama keeps up to
4096 px of width so a face in it stays findable.
"""

from __future__ import annotations

from dataclasses import dataclass

import dlib
import numpy as np
from PIL import Image

from modelcrew_assets.face_models import frontal_face_detector, landmarks_5

_DETECT_SHORT_SIDE = 1024
_DETECT_LONG_SIDE = 4096
_MAX_UPSCALE = 4.0
# The detector's SVM margin (dlib's default cut is 0). Sharp faces score 1.0-1.7 and a blurred one ~0.5;
# speckled backgrounds and the astronaut's suit give windows up to 0.31. At 0.4, 85% of the LFW subset's
# 25 px faces are still found, none of its non-faces (benchmarks/face_models.py, test_scoring.py).
MIN_SCORE = 0.4
_CHIP_SIDE = 150  # the descriptor's chip size; the square's geometry does not depend on it
_SQUARE_PADDING = 0.1


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


@dataclass(frozen=True)
class Detection:
    """What the detector saw: the working copy, its scale, and each face's 5 landmarks (largest first)."""

    pixels: np.ndarray  # RGB uint8, height x width x 3
    scale: float  # working-copy pixels per source pixel
    faces: tuple[dlib.full_object_detection, ...]
    source_size: tuple[int, int]

    def boxes(self) -> list[FaceBox]:
        """The faces in source pixels, clipped to the image."""
        width, height = self.source_size
        out = []
        for face in self.faces:
            square = face_square(face)
            left, top = max(0, round(square.left() / self.scale)), max(0, round(square.top() / self.scale))
            right = min(width, round(square.right() / self.scale))
            bottom = min(height, round(square.bottom() / self.scale))
            if right > left and bottom > top:
                out.append(FaceBox(left, top, right - left, bottom - top))
        return out


def face_square(face: dlib.full_object_detection) -> dlib.drectangle:
    """dlib's landmark-aligned face square (the one its descriptor crops) with 10% padding: about the HOG
    box, brows to chin, but sized by the landmarks; HOG boxes come in pyramid steps of 20%, too coarse to
    tell a 512 px portrait's face from a 480 px one's."""
    return dlib.get_face_chip_details(face, _CHIP_SIDE, _SQUARE_PADDING).rect


def working_scale(size: tuple[int, int]) -> float:
    return min(_MAX_UPSCALE, _DETECT_SHORT_SIDE / min(size), _DETECT_LONG_SIDE / max(size))


def _scaled(image: Image.Image, scale: float) -> np.ndarray:
    working = image if image.mode == "RGB" else image.convert("RGB")
    if scale != 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        resample = Image.Resampling.BILINEAR if scale < 1.0 else Image.Resampling.BICUBIC
        working = working.resize(size, resample, reducing_gap=2.0 if scale < 0.5 else None)
    return np.asarray(working)


def detect(image: Image.Image, min_score: float = MIN_SCORE) -> Detection:
    pixels = _scaled(image, working_scale(image.size))
    rectangles, _, _ = frontal_face_detector().run(pixels, 0, min_score)
    faces = sorted(
        (landmarks_5()(pixels, rectangle) for rectangle in rectangles),
        key=lambda face: face_square(face).area(),
        reverse=True,
    )
    return Detection(pixels, pixels.shape[1] / image.width, tuple(faces), image.size)


def detect_largest(image: Image.Image, min_score: float = MIN_SCORE) -> Detection:
    """The largest face only (what identity scoring embeds), for about a quarter of the scan: the detector
    first searches a copy of half the working size, where any face of 16% of the short side or more shows;
    the landmarks are then placed on the full working copy, so the descriptor sees the same pixels as after
    detect(). A photo whose faces are all smaller than that gets detect()'s full search."""
    scale = working_scale(image.size)
    if scale < _DETECT_SHORT_SIDE / min(image.size):  # a copy already held small (tiny or panoramic photo)
        return detect(image, min_score)
    coarse = _scaled(image, scale / 2)
    rectangles, _, _ = frontal_face_detector().run(coarse, 0, min_score)
    if not rectangles:
        return detect(image, min_score)
    pixels = _scaled(image, scale)
    largest = max(rectangles, key=lambda rectangle: rectangle.area())
    ratio = pixels.shape[1] / coarse.shape[1]
    box = dlib.rectangle(
        round(largest.left() * ratio), round(largest.top() * ratio),
        round(largest.right() * ratio), round(largest.bottom() * ratio),
    )  # fmt: skip
    return Detection(pixels, pixels.shape[1] / image.width, (landmarks_5()(pixels, box),), image.size)


def detect_faces(image: Image.Image) -> list[FaceBox]:
    """Faces in the image, largest first, in the image's own pixel coordinates."""
    return detect(image).boxes()


def prominent_faces(image: Image.Image, relative_side: float = 0.4) -> list[FaceBox]:
    """Faces at least `relative_side` of the largest face's side: the ones a viewer (or a LoRA) notices;
    a crowd far behind the subject does not count as a second subject."""
    faces = detect_faces(image)
    return [box for box in faces if box.width >= relative_side * faces[0].width]


def largest_face(image: Image.Image) -> FaceBox | None:
    faces = detect_faces(image)
    return faces[0] if faces else None
