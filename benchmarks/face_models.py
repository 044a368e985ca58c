"""Benchmark: the old face stack (Haar + lbp-grid-v1) against the new one (dlib HOG + 5-point landmarks +
ResNet descriptor), side by side, on the same fixtures, in one run.

(a) separation on scikit-image's LFW subset (100 faces, no identity labels). "Same" = one LFW photo
    photographed again: 4 variants of each face (crop, mirror, brightness, +-6 degree rotation, blur),
    every pair within a face; "different" = variant 0 of face i against variant 1 of face j, all 4950
    pairs. The subset does repeat some people (faces 0, 36 and 90 are all George W. Bush by eye), so a few
    "different" pairs are really the same person: the AUC is a lower bound. Pairs where either face is
    not found are left out and the detection rate is shown.
(b) faces found (the quality gate's prominence rule) in 12 one-person photos over busy backgrounds;
(c) faces found in a 6000x1000 panorama and in a 300x300 portrait;
(d) ms per image at 1024x1024: detection, and detection + embedding.
Goal: AUC >= 0.95, exactly one face in every one-person photo, the panorama face found.
Run: .venv/bin/python benchmarks/face_models.py
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from benchmarks import haar_lbp_stack
from PIL import Image

from modelcrew_assets.checkpoint_evaluations.selection import IDENTITY_THRESHOLDS
from modelcrew_assets.face_detection import detect, prominent_faces
from modelcrew_assets.face_models import resnet_descriptor
from modelcrew_assets.worker.scoring import DlibEmbedder
from modelcrew_assets_tests.face_fixtures import (
    lfw_faces,
    lfw_photo,
    one_person_photos,
    panorama,
    photographed_again,
    small_portrait,
)

VARIANTS = 4


@dataclass(frozen=True)
class Stack:
    name: str
    count_faces: Callable[[Image.Image], int]
    embed: Callable[[Image.Image], np.ndarray | None]
    baseline: float
    identity_threshold: float | None


def stacks() -> list[Stack]:
    dlib_embedder = DlibEmbedder()
    return [
        Stack(haar_lbp_stack.NAME, lambda image: len(haar_lbp_stack.prominent_faces(image)), haar_lbp_stack.embed,
              haar_lbp_stack.LBP_BASELINE, 0.40),
        Stack(dlib_embedder.name, lambda image: len(prominent_faces(image)), dlib_embedder.embed,
              dlib_embedder.baseline, IDENTITY_THRESHOLDS.get(dlib_embedder.name)),
    ]  # fmt: skip


def auc(same: np.ndarray, different: np.ndarray) -> float:
    greater = (same[:, None] > different[None, :]).mean()
    ties = (same[:, None] == different[None, :]).mean()
    return float(greater + ties / 2)


def equal_error(same: np.ndarray, different: np.ndarray) -> tuple[float, float]:
    """(threshold, error rate) where false accepts and false rejects are as close as they get."""
    candidates = np.unique(np.concatenate([same, different]))
    false_accept = np.array([(different >= t).mean() for t in candidates])
    false_reject = np.array([(same < t).mean() for t in candidates])
    best = int(np.argmin(np.abs(false_accept - false_reject)))
    return float(candidates[best]), float((false_accept[best] + false_reject[best]) / 2)


def separation(stack: Stack, faces: np.ndarray) -> dict[str, str]:
    embedded = [[stack.embed(v) for v in photographed_again(lfw_photo(face), VARIANTS)] for face in faces]
    found = np.mean([vector is not None for group in embedded for vector in group])
    same = np.array(
        [a @ b for group in embedded for a, b in itertools.combinations(group, 2) if a is not None and b is not None]
    )
    pairs = [
        (i, j)
        for i, j in itertools.combinations(range(len(faces)), 2)
        if embedded[i][0] is not None and embedded[j][1] is not None
    ]
    different = np.array([embedded[i][0] @ embedded[j][1] for i, j in pairs])

    def identity(cosine):
        return (cosine - stack.baseline) / (1 - stack.baseline)

    threshold, error = equal_error(same, different)
    top = sorted(zip(different, pairs, strict=True), reverse=True)[:5]
    row = {
        "LFW faces found (of 400 photos)": f"{found:.0%}",
        "ROC AUC, same photo vs different people": f"{auc(same, different):.4f}",
        "equal-error rate": f"{error:.1%}",
        "equal-error threshold (cosine / identity)": f"{threshold:.3f} / {identity(threshold):.3f}",
        "different people: mean, 95th, 99th pct (identity)": _triple(identity(different.mean()), *identity(np.percentile(different, [95, 99]))),
        "same photo again: 1st pct, mean, sd (identity)": _triple(identity(np.percentile(same, 1)), identity(same.mean()), same.std() / (1 - stack.baseline)),
        "most alike different-face pairs (LFW index)": ", ".join(f"{i}-{j} {identity(c):.2f}" for c, (i, j) in top),
    }  # fmt: skip
    if stack.identity_threshold is not None:
        cut = stack.baseline + stack.identity_threshold * (1 - stack.baseline)
        row["at identity threshold: different above / same below"] = (
            f"{stack.identity_threshold}: {(different >= cut).mean():.1%} / {(same < cut).mean():.1%}"
        )
    return row


def _triple(*values: float) -> str:
    return ", ".join(f"{value:.3f}" for value in values)


def detection(stack: Stack, photos: list[tuple[str, Image.Image]]) -> dict[str, str]:
    counts = [stack.count_faces(image) for _, image in photos]
    return {
        "one-person photos with exactly 1 face": f"{sum(c == 1 for c in counts)} / {len(counts)}",
        "faces per one-person photo": " ".join(str(c) for c in counts),
        "faces in 6000x1000 panorama (1 person)": str(stack.count_faces(panorama())),
        "faces in 300x300 portrait (1 person)": str(stack.count_faces(small_portrait())),
    }


def timing(stack: Stack, photos: list[Image.Image]) -> dict[str, str]:
    def median_ms(work: Callable[[Image.Image], object]) -> float:
        runs = []
        for image in photos * 3:
            start = time.perf_counter()
            work(image)
            runs.append((time.perf_counter() - start) * 1000)
        return statistics.median(runs)

    return {
        "ms per 1024x1024 image: detect": f"{median_ms(stack.count_faces):.0f}",
        "ms per 1024x1024 image: detect + embed": f"{median_ms(stack.embed):.0f}",
    }


def dlib_radius_as_identity(faces: np.ndarray, baseline: float) -> str:
    """dlib trained its descriptor so that one person's descriptors lie within 0.6 (Euclidean) of each other.
    For descriptors of length L that is the cosine 1 - 0.6^2 / (2 L^2) between unit vectors."""
    lengths = []
    for face in faces:
        found = detect(lfw_photo(face))
        if found.faces:
            lengths.append(np.linalg.norm(resnet_descriptor().compute_face_descriptor(found.pixels, found.faces[0])))
    length = float(np.mean(lengths))
    cosine = 1 - 0.6**2 / (2 * length**2)
    return (
        f"{(cosine - baseline) / (1 - baseline):.3f} (cosine {cosine:.3f}; L = {length:.3f} +- {np.std(lengths):.3f})"
    )


def main() -> None:
    photos = one_person_photos()
    square = [image for _, image in photos if image.size == (1024, 1024)]
    faces = lfw_faces()
    columns = []
    for stack in stacks():
        started = time.perf_counter()
        columns.append({**separation(stack, faces), **detection(stack, photos), **timing(stack, square)})
        columns[-1]["benchmark wall time (s)"] = f"{time.perf_counter() - started:.0f}"
    dlib_stack = stacks()[1]
    columns[1]["dlib's 0.6 same-person radius, as identity"] = dlib_radius_as_identity(faces, dlib_stack.baseline)
    names = [stack.name for stack in stacks()]
    print(f"| measure | {' | '.join(names)} |")
    print(f"|---|{'---|' * len(names)}")
    for key in dict.fromkeys(key for column in columns for key in column):
        print(f"| {key} | {' | '.join(column.get(key, '-') for column in columns)} |")
    print("one-person backgrounds: " + ", ".join(name for name, _ in photos))


if __name__ == "__main__":
    main()
