"""What each stage hands to the next: a typed index stored at `models/<model>/<asset>/index.json`.

Assets pass data through storage, not through Dagster's I/O manager: the files are the product (a person
or a scheduler reads them), and the index says which files make up the current materialization. Each
stage writes its own index and reads its upstream's with `read_index`, which fails with a clear message
naming the stage to run first.
"""

from __future__ import annotations

from typing import ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from modelcrew_assets.resources.storage import PutResult, StorageResource
from modelcrew_assets.storage_keys import asset_prefix


class StageIndex(BaseModel):
    # Unknown fields are ignored so an older reader still reads a newer index.
    model_config = ConfigDict(frozen=True, extra="ignore")
    ASSET: ClassVar[str]

    model: str
    dry_run: bool = False


class Handoff(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


Index = TypeVar("Index", bound=StageIndex)


def index_key(model: str, asset_name: str) -> str:
    return asset_prefix(model, asset_name) + "index.json"


def write_index(storage: StorageResource, index: StageIndex) -> PutResult:
    return storage.put_bytes(
        index_key(index.model, index.ASSET), index.model_dump_json(indent=2).encode(), "application/json"
    )


def read_index(storage: StorageResource, model: str, index_type: type[Index]) -> Index:
    key = index_key(model, index_type.ASSET)
    try:
        raw = storage.get_bytes(key)
    except KeyError:
        raise MissingUpstreamError(
            f"{index_type.ASSET} has not been materialized for model {model!r} ({key} is missing); "
            f"materialize {index_type.ASSET} for partition {model!r} first"
        ) from None
    return index_type.model_validate_json(raw)


class MissingUpstreamError(RuntimeError):
    """A stage was asked to run before the stage it reads from."""


class SwappedFace(Handoff):
    key: str  # models/<m>/swapped_faces/<sha>.jpg
    sha256: str
    target_key: str  # the uploads/<m>/targets/... photo it came from
    target_sha256: str
    face_box: tuple[int, int, int, int] | None = None  # x, y, width, height in the result image
    width: int
    height: int


class SwappedFaces(StageIndex):
    ASSET: ClassVar[str] = "swapped_faces"
    images: tuple[SwappedFace, ...]


class CaptionedImage(Handoff):
    image_key: str
    image_sha256: str
    caption: str
    source: Literal["model", "hand", "template"]
    face_box: tuple[int, int, int, int] | None = None


class Captions(StageIndex):
    ASSET: ClassVar[str] = "captions"
    prompt_version: str
    items: tuple[CaptionedImage, ...]


class KohyaDataset(StageIndex):
    ASSET: ClassVar[str] = "kohya_dataset"
    version: str  # content hash of images + captions + layout settings
    zip_key: str  # models/<m>/kohya_dataset/<version>/dataset.zip
    config_key: str  # .../dataset.toml
    image_count: int
    repeats: int
    image_folder: str  # "<repeats>_<trigger> <class_word>"


class Checkpoint(Handoff):
    step: int
    key: str  # models/<m>/lora_checkpoints/<run>/<name>-step{N:08d}.safetensors
    sha256: str
    size: int


class LoraCheckpoints(StageIndex):
    ASSET: ClassVar[str] = "lora_checkpoints"
    run_id: str
    dataset_version: str
    base_model: str
    checkpoints: tuple[Checkpoint, ...]


class CheckpointScore(Handoff):
    step: int
    identity: float
    face_detection_rate: float
    memorization: float
    diversity: float


class CheckpointEvaluations(StageIndex):
    ASSET: ClassVar[str] = "checkpoint_evaluations"
    run_id: str
    scores: tuple[CheckpointScore, ...]
    chosen: Checkpoint
    reason: str
    manual: bool = False


class GeneratedImage(Handoff):
    key: str  # models/<m>/generated_batches/<batch>/<nnnn>.png
    sha256: str
    prompt: str
    negative_prompt: str
    seed: int
    width: int
    height: int
    checkpoint_sha256: str


class GeneratedBatch(StageIndex):
    ASSET: ClassVar[str] = "generated_batches"
    batch_id: str
    images: tuple[GeneratedImage, ...]
