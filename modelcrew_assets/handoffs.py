"""What each stage hands to the next: a typed index stored at `models/<model>/<asset>/index.json`.

Assets pass data through storage, not through Dagster's I/O manager: the files are the product (a person
or a scheduler reads them), and the index says which files make up the current materialization. Each
stage writes its own index and reads its upstream's with `read_index`, which fails with a clear message
naming the stage to run first.
"""

from __future__ import annotations

from typing import ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from modelcrew_assets import asset_names
from modelcrew_assets.manifest import ManifestError, ModelSpec, parse_manifest
from modelcrew_assets.object_store import PutResult, Storage
from modelcrew_assets.storage_keys import asset_prefix, manifest_key


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


def write_index(storage: Storage, index: StageIndex) -> PutResult:
    return storage.put_bytes(
        index_key(index.model, index.ASSET), index.model_dump_json(indent=2).encode(), "application/json"
    )


def read_index(storage: Storage, model: str, index_type: type[Index]) -> Index:
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


def read_model_spec(storage: Storage, model: str) -> ModelSpec:
    """The model's validated manifest, which every stage reads; ManifestError names the file and field."""
    source = manifest_key(model)
    try:
        text = storage.get_bytes(source).decode("utf-8")
    except KeyError:
        raise ManifestError(f"{source} is missing; upload the model's model.toml") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{source}: not UTF-8 text; save it as UTF-8 and upload it again") from None
    return parse_manifest(text, source=source, expected_name=model)


class SwappedFace(Handoff):
    key: str  # models/<m>/swapped_faces/<sha>.jpg
    sha256: str
    target_key: str  # the uploads/<m>/targets/... photo it came from
    target_sha256: str
    face_box: tuple[int, int, int, int] | None = None  # x, y, width, height in the result image
    width: int
    height: int


# Why a target photo is kept out of the training set (the quality gate's verdicts, swapped_faces/curation.py).
ExclusionReason = Literal[
    "failed_swap", "unreadable", "no_face", "several_faces", "blurry", "too_small", "near_duplicate", "forced_out"
]


class PhotoVerdict(Handoff):
    """The quality gate's verdict on one target photo, with the measures it was judged by."""

    target_key: str
    image_key: str | None = None  # its swapped photo; None when the swap gave none
    usable: bool
    reasons: tuple[ExclusionReason, ...] = ()  # why excluded; on a forced-in photo, what it was forced past
    detail: str = ""  # the reasons in words, with the numbers
    forced: Literal["in", "out"] | None = None
    faces: int | None = None
    sharpness: float | None = None
    dhash: str | None = None  # 64-bit dHash as 16 hex digits


class SwappedFaces(StageIndex):
    ASSET: ClassVar[str] = asset_names.SWAPPED_FACES
    images: tuple[SwappedFace, ...]  # every swapped photo, usable or not
    verdicts: tuple[PhotoVerdict, ...] = ()  # one per target; an older index without them: all usable

    @property
    def usable_images(self) -> tuple[SwappedFace, ...]:
        """The photos the quality gate let through: what captions and the dataset are made of."""
        if not self.verdicts:
            return self.images
        usable = {verdict.image_key for verdict in self.verdicts if verdict.usable}
        return tuple(image for image in self.images if image.key in usable)


class CaptionedImage(Handoff):
    image_key: str
    image_sha256: str
    caption: str
    source: Literal["model", "hand", "template"]
    face_box: tuple[int, int, int, int] | None = None


class Captions(StageIndex):
    ASSET: ClassVar[str] = asset_names.CAPTIONS
    prompt_version: str
    items: tuple[CaptionedImage, ...]


class KohyaDataset(StageIndex):
    ASSET: ClassVar[str] = asset_names.KOHYA_DATASET
    version: str  # content hash of images + captions + layout settings
    zip_key: str  # models/<m>/kohya_dataset/<version>/dataset.zip
    config_key: str  # .../dataset.toml
    image_count: int  # every image kohya trains on: photos + face crops
    repeats: int
    image_folder: str  # "<repeats>_<trigger> <class_word>"
    photo_count: int = 0  # the distinct photos among them
    face_crop_count: int = 0  # face-centred crops of those photos, each with its own caption


class Checkpoint(Handoff):
    step: int
    key: str  # models/<m>/lora_checkpoints/<run>/<name>-step{N:08d}.safetensors
    sha256: str
    size: int
    uri: str = ""
    metadata: dict[str, str] = {}  # the file's ss_* training metadata


class LoraCheckpoints(StageIndex):
    ASSET: ClassVar[str] = asset_names.LORA_CHECKPOINTS
    run_id: str
    dataset_version: str
    base_model: str
    checkpoints: tuple[Checkpoint, ...]
    loss: tuple[tuple[int, float], ...] = ()  # (step, kohya avr_loss)


class CheckpointScore(Handoff):
    step: int
    identity: float
    face_detection_rate: float
    memorization: float
    diversity: float
    # Added with the checkpoint_evaluations stage; defaults keep older indexes readable.
    cross_prompt_similarity: float = 0.0  # 1 - diversity: samples of different prompts alike
    memorization_max: float = 0.0
    verdict: str = ""  # "ok", "underfit" or "memorizing" under the thresholds used


class CheckpointEvaluations(StageIndex):
    ASSET: ClassVar[str] = asset_names.CHECKPOINT_EVALUATIONS
    run_id: str
    scores: tuple[CheckpointScore, ...]
    chosen: Checkpoint
    reason: str
    manual: bool = False
    lora_run_id: str = ""  # the lora_checkpoints run the scores are for
    verdict: str = ""  # "chosen", "manual", "all_underfit", "all_overfit" or "no_sweet_spot"
    action: str = ""  # what to do when no checkpoint is good
    embedder: str = ""  # the face-embedding model the identity scores come from
    grid_key: str = ""
    scores_key: str = ""


class GeneratedImage(Handoff):
    key: str  # models/<m>/generated_batches/<batch>/<nnnn>.png
    sha256: str
    prompt: str
    negative_prompt: str
    seed: int
    width: int
    height: int
    checkpoint_sha256: str
    # Provenance added with the generated_batches stage; defaults keep older indexes readable.
    index: int = 0
    platform: str = ""  # the [generation].aspects entry the image was rendered for
    aspect: str = ""
    sampler: str = ""
    steps: int = 0
    cfg: float = 0.0
    lora_weight: float = 1.0
    checkpoint_key: str = ""
    base_model: str = ""
    generator: str = ""
    created_at: str = ""  # ISO 8601 UTC, when the image was finished
    seconds: float = 0.0  # render time of this image
    dry_run: bool = False


class GeneratedBatch(StageIndex):
    ASSET: ClassVar[str] = asset_names.GENERATED_BATCHES
    batch_id: str
    images: tuple[GeneratedImage, ...]
    planned: int = 0  # images the batch should have; more than len(images) when a cap stopped it
    complete: bool = True
    stopped_by: str | None = None  # "max_images", "max_gpu_minutes" or "worker failed"


class PlatformExport(Handoff):
    key: str  # models/<m>/platform_exports/<batch>/<platform>/<stem>-<render id>.jpg
    platform: str
    width: int
    height: int
    sha256: str
    source_key: str
    source_sha256: str
    digital_source_type: str  # IPTC NewsCodes URI written into the file's XMP
    crop: Literal["face", "detail", "centre"]
    face_kept: bool | None = None  # face whole in frame and clear of the UI zones; None: no face found
    # "native": rendered at this platform's aspect; "cropped": from another aspect, kept only where the face
    # fits; "any": from a batch without per-platform renders.
    fit: Literal["native", "cropped", "any"] = "any"


class RejectedImage(Handoff):
    key: str
    reason: str


class PlatformExports(StageIndex):
    ASSET: ClassVar[str] = asset_names.PLATFORM_EXPORTS
    batch_id: str
    settings_fingerprint: str
    exports: tuple[PlatformExport, ...]
    manifests: tuple[str, ...]  # one manifest.csv per platform
    rejected: tuple[RejectedImage, ...] = ()
