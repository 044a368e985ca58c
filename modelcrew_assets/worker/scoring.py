"""Scores for a checkpoint's samples: identity against the model's reference face(s), and memorization of
the training photos. Run by the worker next to the images; numpy, OpenCV and Pillow only.

Identity uses OpenCV Zoo's YuNet detector (MIT) + SFace recognizer (Apache-2.0) when their ONNX weights are
baked into the image (paths from MODELCREW_YUNET_MODEL / MODELCREW_SFACE_MODEL). Without them (dry-run, a
CPU box) it falls back to a weight-free classical embedder: mirror-symmetric uniform-LBP histograms on a grid
over the Haar-detected face crop. That one measures how alike two face crops look, not who they are; every
score names the embedder it came from, and thresholds are kept per embedder.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from PIL import Image, ImageOps

from modelcrew_assets.face_detection import largest_face

YUNET_ENV = "MODELCREW_YUNET_MODEL"
SFACE_ENV = "MODELCREW_SFACE_MODEL"
DEFAULT_YUNET = "/opt/models/face/face_detection_yunet_2023mar.onnx"
DEFAULT_SFACE = "/opt/models/face/face_recognition_sface_2021dec.onnx"
LBP_EMBEDDER = "lbp-grid-v1"
SFACE_EMBEDDER = "opencv-yunet-2023mar+sface-2021dec"
THUMB_SIDE = 32  # memorization compares 32x32 grayscale thumbnails: composition and tones, not detail
# Haar detection costs grow with pixels; samples are searched at this size (faces under ~5% of the
# shorter side are missed either way) and cropped from the full image.
DETECT_SIDE = 512


class FaceEmbedder(Protocol):
    name: str
    baseline: float  # cosine that means "no likeness"; identity = (cosine - baseline) / (1 - baseline)

    def embed(self, image: Image.Image) -> np.ndarray | None:
        """Unit-length embedding of the largest face, or None when no face is found."""


@lru_cache(maxsize=1)
def _uniform_lbp_table() -> np.ndarray:
    """Maps the 256 8-neighbour LBP codes to 59 bins: the 58 'uniform' codes (at most two 0/1
    transitions around the circle) each get a bin, every other code shares the last one."""
    table = np.full(256, 58, np.uint8)
    index = 0
    for code in range(256):
        bits = [(code >> i) & 1 for i in range(8)]
        if sum(bits[i] != bits[(i + 1) % 8] for i in range(8)) <= 2:
            table[code] = index
            index += 1
    return table


def lbp_codes(gray: np.ndarray) -> np.ndarray:
    """Uniform LBP bin (0..58) of every interior pixel of a 2-D uint8 array."""
    pixels = gray.astype(np.int16)
    centre = pixels[1:-1, 1:-1]
    codes = np.zeros(centre.shape, np.uint8)
    height, width = pixels.shape
    neighbours = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))
    for bit, (dy, dx) in enumerate(neighbours):
        neighbour = pixels[1 + dy : height - 1 + dy, 1 + dx : width - 1 + dx]
        codes |= (neighbour >= centre).astype(np.uint8) << bit
    return _uniform_lbp_table()[codes]


class LbpEmbedder:
    """Weight-free face embedding: per-cell uniform-LBP histograms over a 6x6 grid of the equalized 64x64
    face crop, square-rooted (Hellinger), averaged with the mirror image's so head turns matter less."""

    name = LBP_EMBEDDER
    # Histogram cosines are never far from 1: different people score 0.755 +- 0.032 and the same face
    # 0.89 (LFW subset, measured). Rescaling from 0.70 puts them near 0.18 and 0.65, so a sample without a
    # face (0) weighs on the mean as much as it would with a real recognizer.
    baseline = 0.70
    side = 64
    grid = 6

    def embed(self, image: Image.Image) -> np.ndarray | None:
        scale = min(1.0, DETECT_SIDE / max(image.size))
        small = image if scale == 1.0 else image.resize((round(image.width * scale), round(image.height * scale)))
        box = largest_face(small)
        if box is None:
            return None
        left, top = box.x / scale, box.y / scale
        return self.embed_crop(image.crop((round(left), round(top), round(left + box.width / scale), round(top + box.height / scale))))

    def embed_crop(self, crop: Image.Image) -> np.ndarray:
        vector = self._histograms(crop) + self._histograms(ImageOps.mirror(crop))
        return vector / np.linalg.norm(vector)

    def _histograms(self, crop: Image.Image) -> np.ndarray:
        gray = cv2.equalizeHist(np.asarray(crop.convert("L").resize((self.side, self.side), Image.Resampling.BILINEAR)))
        codes = lbp_codes(gray)
        cell = codes.shape[0] // self.grid
        histograms = []
        for row in range(self.grid):
            for column in range(self.grid):
                block = codes[row * cell : (row + 1) * cell, column * cell : (column + 1) * cell]
                histograms.append(np.bincount(block.ravel(), minlength=59) / block.size)
        vector = np.sqrt(np.concatenate(histograms))
        return vector / np.linalg.norm(vector)


class SFaceEmbedder:
    """YuNet finds the face and its five landmarks, SFace embeds the aligned 112x112 crop (128-d)."""

    name = SFACE_EMBEDDER
    baseline = 0.0

    def __init__(self, yunet_path: str, sface_path: str, score_threshold: float = 0.7):
        self._detector = cv2.FaceDetectorYN.create(yunet_path, "", (320, 320), score_threshold)
        self._recognizer = cv2.FaceRecognizerSF.create(sface_path, "")

    def embed(self, image: Image.Image) -> np.ndarray | None:
        bgr = cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR)
        self._detector.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, faces = self._detector.detect(bgr)
        if faces is None or len(faces) == 0:
            return None
        face = max(faces, key=lambda row: row[2] * row[3])
        feature = self._recognizer.feature(self._recognizer.alignCrop(bgr, face)).ravel().astype(np.float64)
        return feature / np.linalg.norm(feature)


def load_embedder(environ: Mapping[str, str] = os.environ) -> FaceEmbedder:
    """SFace when both ONNX files are on this box, else the classical embedder (named in every score)."""
    yunet = Path(environ.get(YUNET_ENV) or DEFAULT_YUNET)
    sface = Path(environ.get(SFACE_ENV) or DEFAULT_SFACE)
    if yunet.is_file() and sface.is_file():
        return SFaceEmbedder(str(yunet), str(sface))
    return LbpEmbedder()


def thumbnail(image: Image.Image) -> np.ndarray:
    """Zero-mean, unit-length 32x32 grayscale thumbnail: the dot product of two is their correlation."""
    pixels = np.asarray(image.convert("L").resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX), np.float64)
    pixels = pixels.ravel() - pixels.mean()
    norm = np.linalg.norm(pixels)
    return pixels / norm if norm > 0 else pixels


@dataclass(frozen=True)
class Sample:
    id: str
    prompt: str
    seed: int
    image: Image.Image


@dataclass(frozen=True)
class SampleScore:
    id: str
    face_found: bool
    identity: float  # best cosine to a reference face, rescaled from the embedder's baseline; 0 without a face
    nearest_training: float  # thumbnail correlation with the most alike training image
    nearest_training_key: str


@dataclass(frozen=True)
class GroupScore:
    """The scores of one checkpoint's samples."""

    identity: float  # mean over samples (a sample without a face counts 0)
    face_detection_rate: float
    memorization: float  # mean nearest-training-image correlation
    memorization_max: float
    cross_prompt_similarity: float  # mean correlation between samples of different prompts
    samples: tuple[SampleScore, ...]
    embedder: str


class ReferenceFaces:
    """The model's reference embeddings and training thumbnails, computed once for every checkpoint."""

    def __init__(self, embedder: FaceEmbedder, faces: Sequence[tuple[str, Image.Image]], training: Sequence[tuple[str, Image.Image]]):
        self.embedder = embedder
        embedded = [(name, embedder.embed(image)) for name, image in faces]
        missing = [name for name, vector in embedded if vector is None]
        if missing or not embedded:
            raise ValueError(
                f"no face found by {embedder.name} in reference image(s) {', '.join(missing) or '(none given)'}; "
                "upload a clear, front-facing photo of the model's face to uploads/<model>/face/"
            )
        self.embeddings = np.stack([vector for _, vector in embedded])
        self.training_keys = [name for name, _ in training]
        self.training_thumbs = np.stack([thumbnail(image) for _, image in training]) if training else None

    def score(self, samples: Sequence[Sample]) -> GroupScore:
        thumbs = [thumbnail(sample.image) for sample in samples]
        scored = [self._score_one(sample, thumb) for sample, thumb in zip(samples, thumbs, strict=True)]
        cross = [float(thumbs[i] @ thumbs[j]) for i, j in cross_prompt_pairs(samples)]
        nearest = [s.nearest_training for s in scored]
        return GroupScore(
            identity=_mean([s.identity for s in scored]),
            face_detection_rate=_mean([1.0 if s.face_found else 0.0 for s in scored]),
            memorization=_mean(nearest),
            memorization_max=max(nearest, default=0.0),
            cross_prompt_similarity=_mean(cross),
            samples=tuple(scored),
            embedder=self.embedder.name,
        )

    def _score_one(self, sample: Sample, thumb: np.ndarray) -> SampleScore:
        vector = self.embedder.embed(sample.image)
        identity = 0.0
        if vector is not None:
            baseline = self.embedder.baseline
            identity = max(0.0, (float(np.max(self.embeddings @ vector)) - baseline) / (1.0 - baseline))
        nearest, nearest_key = 0.0, ""
        if self.training_thumbs is not None:
            correlations = self.training_thumbs @ thumb
            best = int(np.argmax(correlations))
            nearest, nearest_key = float(correlations[best]), self.training_keys[best]
        return SampleScore(sample.id, vector is not None, round(identity, 4), round(nearest, 4), nearest_key)


def cross_prompt_pairs(samples: Sequence[Sample]) -> list[tuple[int, int]]:
    """Pairs of samples with different prompts and the same seed: an overfit LoRA draws the same picture
    for a seed whatever the prompt. All different-prompt pairs when no seed repeats."""
    different = [(i, j) for i, j in itertools.combinations(range(len(samples)), 2) if samples[i].prompt != samples[j].prompt]
    same_seed = [(i, j) for i, j in different if samples[i].seed == samples[j].seed]
    return same_seed or different


def _mean(values: Sequence[float]) -> float:
    return round(float(np.mean(values)), 4) if values else 0.0
