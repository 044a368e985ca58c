"""What the worker renders: one job model for `generate` and `batch`, built by the stages and read by the
worker. Pydantic only, so stage code imports it without the worker's image stack (PIL, OpenCV, torch)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

# Sampler name -> (diffusers scheduler class, from_config keyword arguments).
SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {}),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
}


class JobError(ValueError):
    """A job that cannot be rendered as given; the message names the job."""


class ImageSettings(BaseModel):
    """Everything that decides what an image looks like: the same settings render the same image."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    prompt: str
    negative_prompt: str
    seed: int
    width: int
    height: int
    steps: int
    cfg: float
    sampler: str  # a key of SAMPLERS
    lora_weight: float = 1.0


class RenderJob(ImageSettings):
    """One image to render and where its PNG goes."""

    id: str  # unique in the list; echoed in every message about it
    output_key: str
    lora_key: str | None = None  # a .safetensors in storage; None renders the base model
    tags: dict[str, str] = {}  # echoed back (e.g. step, prompt index)

    def __init__(self, **data: Any):
        try:
            super().__init__(**data)
        except ValidationError as error:
            raise JobError(_describe(data, error)) from None

    @model_validator(mode="after")
    def _renderable(self) -> RenderJob:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler {self.sampler!r} is unknown; use one of {', '.join(SAMPLERS)}")
        if self.width % 8 or self.height % 8 or min(self.width, self.height) < 64:
            raise ValueError(f"{self.width}x{self.height} must be multiples of 8, at least 64")
        return self

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Self:
        """A job from its dict; keys the job does not know (a caller's own bookkeeping) are ignored."""
        return cls(**data)

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class BatchJob(RenderJob):
    """One image of a generated batch: rendered with the batch's checkpoint (the command loads it once for
    every job), then recorded with its provenance at `record_key`."""

    index: int
    platform: str  # the [generation].aspects entry the image is for
    aspect: str
    record_key: str

    # What the image's provenance record repeats of its job.
    RECORDED: ClassVar[frozenset[str]] = frozenset({*ImageSettings.model_fields, "index", "platform", "aspect"})

    def recorded(self) -> dict[str, Any]:
        return self.model_dump(include=set(self.RECORDED))


def _describe(data: Mapping[str, Any], error: ValidationError) -> str:
    missing = sorted(str(e["loc"][0]) for e in error.errors() if e["type"] == "missing")
    if missing:
        problem = f"missing {', '.join(missing)}"
    else:
        first = error.errors()[0]
        cause = first.get("ctx", {}).get("error")
        field = ".".join(map(str, first["loc"]))
        problem = str(cause) if cause is not None else f"{field}: {first['msg']}"
    return f"job {data.get('id', '?')}: {problem}"
