"""The custom Pipes messages a worker sends back, as models both sides use (no dagster here): the worker sends
`message.model_dump(mode="json")`, the orchestrator reads each with `parse_message`.

Every command ends with one result message (`type` "result"); `command` says whose fields it carries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Tag, TypeAdapter, ValidationError

CHECKPOINT = "checkpoint"
SAMPLE = "sample"
IMAGE = "image"
CHECKPOINT_SCORE = "checkpoint_score"
GENERATED_IMAGE = "generated_image"
HEARTBEAT = "heartbeat"
RESULT = "result"

LOG_TAIL_LINES = 50

# The face-embedding models a checkpoint_score names; stage code picks thresholds by them.
DLIB_EMBEDDER = "dlib-hog+5pt+resnet-v1"
SFACE_EMBEDDER = "opencv-yunet-2023mar+sface-2021dec"


class WorkerMessage(BaseModel):
    # Unknown fields are ignored so an orchestrator reads a newer worker image's messages.
    model_config = ConfigDict(frozen=True, extra="ignore")


class Heartbeat(WorkerMessage):
    """Sent at a fixed interval while a command runs; the executor drops it from what stages read."""

    type: Literal["heartbeat"] = HEARTBEAT


class CheckpointStored(WorkerMessage):
    type: Literal["checkpoint"] = CHECKPOINT
    step: int
    key: str
    sha256: str
    size: int
    metadata: dict[str, str] = {}  # the file's ss_* training metadata


class SampleStored(WorkerMessage):
    type: Literal["sample"] = SAMPLE
    step: int | None
    key: str


class ImageRendered(WorkerMessage):
    """One `generate` job done; sha256 and size are None for a skipped image that was not fetched."""

    type: Literal["image"] = IMAGE
    id: str
    key: str
    sha256: str | None
    size: int | None
    seed: int
    seconds: float
    lora_key: str | None
    tags: dict[str, str] = {}
    skipped: bool = False


class SampleScore(WorkerMessage):
    id: str
    face_found: bool
    identity: float  # best cosine to a reference face, rescaled from the embedder's baseline; 0 without a face
    nearest_training: float  # thumbnail correlation with the most alike training image
    nearest_training_key: str


class CheckpointScored(WorkerMessage):
    """One LoRA's samples scored against the model's reference faces and training images."""

    type: Literal["checkpoint_score"] = CHECKPOINT_SCORE
    lora_key: str | None
    identity: float
    face_detection_rate: float
    memorization: float
    memorization_max: float
    cross_prompt_similarity: float
    embedder: str
    samples: tuple[SampleScore, ...] = ()


class BatchImageStored(WorkerMessage):
    """One image of a `batch` stored with its provenance record."""

    type: Literal["generated_image"] = GENERATED_IMAGE
    index: int
    key: str
    sha256: str
    seconds: float


class Result(WorkerMessage):
    """How a command ended; a failed one carries the error and the last log lines."""

    type: Literal["result"] = RESULT
    ok: bool
    error: str | None = None
    log_tail: tuple[str, ...] = ()


class TrainResult(Result):
    command: Literal["train"] = "train"
    loss: tuple[tuple[int, float], ...] = ()  # (step, kohya avr_loss), downsampled
    trainer_seconds: float | None = None
    trainer_command: tuple[str, ...] = ()
    base_model: str = ""
    kohya_layout: dict[str, Any] = {}
    attempt: str = ""
    resumed_from_step: int = 0
    finished_before_start: bool = False  # a whole state at max_train_steps was stored: nothing was trained
    resumed_checkpoints: tuple[tuple[int, str], ...] | None = None  # None: the resumed state's lineage is unknown


class GenerateResult(Result):
    command: Literal["generate"] = "generate"
    generator: str = ""
    base_model: str = ""
    seconds: float = 0.0
    rendered: int = 0
    skipped: int = 0


class BatchResult(Result):
    command: Literal["batch"] = "batch"
    generator: str = ""
    rendered: int = 0
    skipped: int = 0
    stopped_by: str | None = None
    render_seconds: float = 0.0


_RESULTS = {"train": TrainResult, "generate": GenerateResult, "batch": BatchResult}


def _tag(message: Any) -> str | None:
    if not isinstance(message, Mapping):
        return None
    kind = message.get("type")
    if kind == RESULT and message.get("command") in _RESULTS:
        return f"{RESULT}/{message['command']}"
    return kind


AnyMessage = Annotated[
    Annotated[Heartbeat, Tag(HEARTBEAT)]
    | Annotated[CheckpointStored, Tag(CHECKPOINT)]
    | Annotated[SampleStored, Tag(SAMPLE)]
    | Annotated[ImageRendered, Tag(IMAGE)]
    | Annotated[CheckpointScored, Tag(CHECKPOINT_SCORE)]
    | Annotated[BatchImageStored, Tag(GENERATED_IMAGE)]
    | Annotated[Result, Tag(RESULT)]
    | Annotated[TrainResult, Tag(f"{RESULT}/train")]
    | Annotated[GenerateResult, Tag(f"{RESULT}/generate")]
    | Annotated[BatchResult, Tag(f"{RESULT}/batch")],
    Discriminator(_tag),
]
_ADAPTER: TypeAdapter[WorkerMessage] = TypeAdapter(AnyMessage)


class WorkerMessageError(ValueError):
    """A custom Pipes message that matches none of the models above."""


def parse_message(raw: Any) -> WorkerMessage:
    """The message as its model; WorkerMessageError names the message type and what did not match."""
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as error:
        kind = raw.get("type") if isinstance(raw, Mapping) else type(raw).__name__
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or 'type'}: {e['msg']}" for e in error.errors())
        raise WorkerMessageError(
            f"the worker sent a {kind!r} message this orchestrator cannot read ({problems}); the worker image "
            "and the orchestrator must come from the same modelcrew version"
        ) from None
