"""The worker's scoring module on real faces (scikit-image's astronaut and LFW subset) and on its contract.

What dlib's descriptor achieves is measured here, not assumed (benchmarks/face_models.py measures it on
the whole subset, beside the old Haar + LBP stack). LFW subset has no identity labels: "same" is one LFW
photo photographed again (crop, mirror, tone, rotation, blur), "different" is two different LFW photos,
which is nearly always two different people.
"""

from __future__ import annotations

import itertools
import sys

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from modelcrew_assets.checkpoint_evaluations.selection import Thresholds
from modelcrew_assets.face_detection import detect_faces
from modelcrew_assets.face_models import (
    MODELS_DIR_ENV,
    FaceModelsMissingError,
    model_path,
    models_dir,
)
from modelcrew_assets.worker.scoring import (
    DLIB_EMBEDDER,
    DlibEmbedder,
    ReferenceFaces,
    Sample,
    cross_prompt_pairs,
    load_embedder,
    thumbnail,
)
from modelcrew_assets_tests.builders import target_variants
from modelcrew_assets_tests.face_fixtures import (
    lfw_faces,
    lfw_photo,
    photographed_again,
)


@pytest.fixture(scope="module")
def lfw() -> np.ndarray:
    return lfw_faces()


@pytest.fixture(scope="module")
def embedder() -> DlibEmbedder:
    return DlibEmbedder()


def test_dlib_ranks_the_same_photo_again_above_different_people_and_the_threshold_lies_between(lfw, embedder):
    groups = [[embedder.embed(v) for v in photographed_again(lfw_photo(face), 3)] for face in lfw[:40]]
    groups = [[v for v in group if v is not None] for group in groups]
    same = np.array([a @ b for group in groups for a, b in itertools.combinations(group, 2)])
    different = np.array(
        [groups[i][0] @ groups[j][-1] for i, j in itertools.combinations(range(40), 2) if groups[i] and groups[j]]
    )
    assert (same[:, None] > different[None, :]).mean() > 0.99  # ROC AUC; 1.000 on all 100 faces

    def identity(cosine):
        return (cosine - embedder.baseline) / (1 - embedder.baseline)

    threshold = Thresholds.for_embedder(DLIB_EMBEDDER).identity
    # Measured on all 100 faces: the same photo again >= 0.85 (1st percentile), different faces 0.06 on
    # average with 6% above the threshold, the highest of them pairs of the same person (faces 0, 36, 90).
    assert np.percentile(identity(same), 1) > threshold
    assert identity(different.mean()) < 0.15 and (identity(different) >= threshold).mean() < 0.10


def test_astronaut_is_more_like_her_own_variants_than_like_other_people(astronaut, lfw, embedder):
    references = ReferenceFaces(embedder, [("face.jpg", astronaut)], [])
    own = references.score([Sample(f"v{i}", "p", i, image) for i, image in enumerate(target_variants(astronaut, 6))])
    others = references.score([Sample(f"o{i}", "p", i, lfw_photo(face, 150, 40)) for i, face in enumerate(lfw[:20])])
    assert own.face_detection_rate == 1.0
    assert own.identity > 0.8
    assert others.face_detection_rate >= 0.7  # measured 15 of these 20 enlarged 25 px faces
    found = [s.identity for s in others.samples if s.face_found]
    assert max(found) < min(s.identity for s in own.samples) and np.mean(found) < 0.2


def test_face_detection_rate_on_lfw_faces_and_non_faces():
    from skimage import data

    patches = (data.lfw_subset() * 255).astype(np.uint8)
    faces = np.mean([bool(detect_faces(lfw_photo(face))) for face in patches[:100]])
    non_faces = np.mean([bool(detect_faces(lfw_photo(patch))) for patch in patches[100:]])
    # Measured with dlib's HOG at face_detection.MIN_SCORE: 0.87 of the 25 px faces, 0.00 of non-faces.
    assert faces >= 0.85
    assert non_faces <= 0.02


def test_a_sample_without_a_face_scores_zero_identity_and_lowers_the_detection_rate(astronaut):
    references = ReferenceFaces(DlibEmbedder(), [("face.jpg", astronaut)], [])
    blank = Image.new("RGB", (512, 512), (90, 120, 150))
    score = references.score([Sample("face", "a", 1, astronaut), Sample("blank", "b", 1, blank)])
    assert [s.face_found for s in score.samples] == [True, False]
    assert score.samples[1].identity == 0.0
    assert score.face_detection_rate == 0.5
    assert score.identity == pytest.approx(score.samples[0].identity / 2, abs=1e-3)


def test_near_copy_of_a_training_photo_is_memorization_and_names_the_photo(astronaut):
    training = [("t/a.jpg", astronaut), ("t/b.jpg", Image.new("RGB", (400, 300), (200, 10, 10)))]
    references = ReferenceFaces(DlibEmbedder(), [("face.jpg", astronaut)], training)
    copy = ImageEnhance.Brightness(astronaut.resize((1024, 1024))).enhance(1.05)
    fresh = ImageOps.mirror(astronaut).rotate(90)
    score = references.score([Sample("copy", "a", 1, copy), Sample("fresh", "b", 1, fresh)])
    assert score.samples[0].nearest_training > 0.95 and score.samples[0].nearest_training_key == "t/a.jpg"
    assert score.samples[1].nearest_training < 0.6
    assert score.memorization_max == score.samples[0].nearest_training


def test_same_picture_for_every_prompt_shows_as_cross_prompt_similarity(astronaut):
    references = ReferenceFaces(DlibEmbedder(), [("face.jpg", astronaut)], [])
    same = references.score([Sample(f"p{p}", f"prompt {p}", 7, astronaut) for p in range(4)])
    rng = np.random.default_rng(3)
    different = references.score(
        [
            Sample(f"p{p}", f"prompt {p}", 7, Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
            for p in range(4)
        ]
    )
    assert same.cross_prompt_similarity == pytest.approx(1.0, abs=1e-3)
    assert abs(different.cross_prompt_similarity) < 0.3


def test_cross_prompt_pairs_compare_the_same_seed_across_prompts():
    image = Image.new("RGB", (8, 8))
    samples = [
        Sample("a1", "a", 1, image),
        Sample("a2", "a", 2, image),
        Sample("b1", "b", 1, image),
        Sample("b2", "b", 2, image),
    ]
    assert cross_prompt_pairs(samples) == [(0, 2), (1, 3)]
    assert cross_prompt_pairs([samples[0], samples[3]]) == [(0, 1)]


def test_thumbnail_correlation_is_one_for_the_same_picture_at_another_size(astronaut):
    assert thumbnail(astronaut) @ thumbnail(astronaut.resize((1000, 1000))) > 0.99


def test_reference_without_a_face_is_an_error_naming_the_file(astronaut):
    with pytest.raises(
        ValueError, match=r"no face found by dlib-hog\+5pt\+resnet-v1 in reference image\(s\) uploads/m/face/wall.jpg"
    ):
        ReferenceFaces(DlibEmbedder(), [("uploads/m/face/wall.jpg", Image.new("RGB", (300, 300), "white"))], [])


def test_without_sface_weights_dlib_is_used_and_named(tmp_path):
    embedder = load_embedder(
        {"MODELCREW_YUNET_MODEL": str(tmp_path / "none.onnx"), "MODELCREW_SFACE_MODEL": str(tmp_path / "none.onnx")}
    )
    assert embedder.name == DLIB_EMBEDDER


def test_model_files_are_found_without_importing_face_recognition_models():
    # Its __init__ imports pkg_resources, which is not installed: locating the files must not import it.
    assert (models_dir() / "dlib_face_recognition_resnet_model_v1.dat").is_file()
    assert "face_recognition_models" not in sys.modules


def test_a_missing_model_file_names_the_file_and_the_setting(tmp_path):
    with pytest.raises(
        FaceModelsMissingError, match=rf"{tmp_path}/shape_predictor_5_face_landmarks.dat is missing.*{MODELS_DIR_ENV}"
    ):
        model_path("shape_predictor_5_face_landmarks.dat", {MODELS_DIR_ENV: str(tmp_path)})
