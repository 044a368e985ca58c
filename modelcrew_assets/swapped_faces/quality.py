"""Quality measures for training photos. Pure: images in, numbers out.

Sharpness is the variance of the Laplacian of the grayscale image, measured after scaling the short side
to 512 px so photos of different sizes are comparable. Sharp photos score in the hundreds or more; a
photo scoring below `MIN_SHARPNESS` (100, the usual rule of thumb for this measure) looks soft or
out of focus and teaches a LoRA blur.

Faces are counted with dlib's HOG detector (face_detection.py) under the prominence rule: faces at least
0.4 of the largest one's width. A crowd far behind the subject is not a second subject.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from modelcrew_assets.face_detection import prominent_faces

SDXL_MIN_SIDE = 1024
MIN_SHARPNESS = 100.0
_SHARPNESS_SIDE = 512


def short_side(image: Image.Image) -> int:
    return min(image.size)


def sharpness(image: Image.Image) -> float:
    gray = image.convert("L")
    scale = _SHARPNESS_SIDE / min(gray.size)
    gray = gray.resize((round(gray.width * scale), round(gray.height * scale)), Image.Resampling.BILINEAR)
    return float(cv2.Laplacian(np.asarray(gray, dtype=np.float64), cv2.CV_64F).var())


def face_count(image: Image.Image) -> int:
    return len(prominent_faces(image))
