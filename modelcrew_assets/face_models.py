"""Where dlib's face model files live, and one loaded copy of each per thread.

The files come from the `face_recognition_models` wheel (Davis King's dlib-models, released into the public
domain). Its __init__ imports pkg_resources, which modern environments lack, so the package is located
without importing it. MODELCREW_FACE_MODELS_DIR points elsewhere (a baked-in copy, a test folder).
The 68-point landmark model in the same wheel is never loaded: its training set (iBUG 300-W) excludes
commercial use.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import threading
from collections.abc import Mapping
from pathlib import Path

import dlib

MODELS_DIR_ENV = "MODELCREW_FACE_MODELS_DIR"
LANDMARKS_5 = "shape_predictor_5_face_landmarks.dat"
RESNET_DESCRIPTOR = "dlib_face_recognition_resnet_model_v1.dat"


class FaceModelsMissingError(RuntimeError):
    pass


def models_dir(environ: Mapping[str, str] = os.environ) -> Path:
    configured = environ.get(MODELS_DIR_ENV)
    if configured:
        return Path(configured)
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise FaceModelsMissingError(
            "dlib's face models are not installed; pip install face_recognition_models "
            f"(or set {MODELS_DIR_ENV} to a folder holding {LANDMARKS_5} and {RESNET_DESCRIPTOR})"
        )
    return Path(spec.origin).parent / "models"


def model_path(name: str, environ: Mapping[str, str] = os.environ) -> Path:
    path = models_dir(environ) / name
    if not path.is_file():
        raise FaceModelsMissingError(
            f"face model {path} is missing; reinstall face_recognition_models or fix {MODELS_DIR_ENV}"
        )
    return path


# dlib's detector and descriptor network keep scratch state between calls: one of each per thread.
_per_thread = threading.local()
# Building dlib's detector takes ~0.3 s (it decodes its filters); a pickled copy loads in ~1 ms and detects
# the same faces, so each process builds it once and every thread gets a copy of that.
_detector_pickle: bytes | None = None
_detector_lock = threading.Lock()


def frontal_face_detector() -> dlib.fhog_object_detector:
    """dlib's HOG detector (5 filters: frontal, left, right, frontal rotated either way; inside dlib)."""
    global _detector_pickle
    detector = getattr(_per_thread, "detector", None)
    if detector is None:
        with _detector_lock:
            if _detector_pickle is None:
                _detector_pickle = pickle.dumps(dlib.get_frontal_face_detector())
        detector = _per_thread.detector = pickle.loads(_detector_pickle)
    return detector


def landmarks_5() -> dlib.shape_predictor:
    """Eye corners and the base of the nose: all the descriptor needs to align a face."""
    predictor = getattr(_per_thread, "landmarks", None)
    if predictor is None:
        predictor = _per_thread.landmarks = dlib.shape_predictor(str(model_path(LANDMARKS_5)))
    return predictor


def resnet_descriptor() -> dlib.face_recognition_model_v1:
    """The 128-d ResNet face descriptor (99.38% on LFW pairs, trained on identities outside LFW)."""
    model = getattr(_per_thread, "descriptor", None)
    if model is None:
        model = _per_thread.descriptor = dlib.face_recognition_model_v1(str(model_path(RESNET_DESCRIPTOR)))
    return model
