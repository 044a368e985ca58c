"""ModelSpec: the validated `uploads/<model>/model.toml`. Pure: no Dagster, no I/O beyond parsing text."""

from __future__ import annotations

import re
import tomllib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modelcrew_assets.storage_keys import MODEL_SLUG

TRIGGER_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]{1,31}")
CLASS_WORD = re.compile(r"[a-z]+( [a-z]+)?")

DEFAULT_PROMPTS = (
    "{trigger}, close-up portrait of a {class_word}, natural light, 85mm photo",
    "{trigger}, half-body photo of a {class_word} in a casual outfit, city street",
    "{trigger}, a {class_word} sitting in a cafe, candid photo, soft window light",
    "{trigger}, full-body photo of a {class_word} at the beach, golden hour",
)


class ManifestError(ValueError):
    """A model.toml that cannot be used; the message names the file and the field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSection(_Section):
    name: str
    trigger: str
    class_word: str

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not MODEL_SLUG.fullmatch(value):
            raise ValueError("must be 1-40 characters of a-z, 0-9, '_' or '-', starting with a letter or digit")
        return value

    @field_validator("trigger")
    @classmethod
    def _trigger(cls, value: str) -> str:
        if not TRIGGER_WORD.fullmatch(value):
            raise ValueError("must be one word of 2-32 letters, digits or '_' (e.g. 'blondie' or 'ohwx')")
        return value

    @field_validator("class_word")
    @classmethod
    def _class_word(cls, value: str) -> str:
        if not CLASS_WORD.fullmatch(value):
            raise ValueError("must be one or two lowercase words, e.g. 'woman' or 'young man'")
        return value


class ConsentSection(_Section):
    attested_by: str = Field(min_length=3)
    basis: Literal["synthetic", "licensed", "self"]


class SwapSection(_Section):
    faces: Literal["largest", "all"] = "largest"
    enhance: bool = False
    min_success: float = Field(default=0.8, ge=0.0, le=1.0)


class TrainingSection(_Section):
    repeats: int = Field(default=30, ge=1, le=1000)
    max_train_steps: int = Field(default=1500, ge=10, le=100_000)
    save_every_n_steps: int = Field(default=250, ge=1)
    network_dim: int = Field(default=16, ge=1, le=256)
    network_alpha: float = Field(default=16, gt=0)
    learning_rate: float = Field(default=1e-4, gt=0, lt=1)
    resolution: int = Field(default=1024, ge=256, le=2048)
    train_batch_size: int = Field(default=1, ge=1, le=64)


class GenerationSection(_Section):
    prompts: tuple[str, ...] = Field(default=DEFAULT_PROMPTS, min_length=1)
    negative_prompt: str = "blurry, lowres, deformed, extra fingers, watermark, text"
    images: int = Field(default=100, ge=1, le=10_000)
    seeds: Literal["auto"] | tuple[int, ...] = "auto"


class PlatformSize(_Section):
    """A custom export target; ui_top/ui_bottom are the fractions of the height the app's UI covers."""

    width: int = Field(ge=64, le=8192)
    height: int = Field(ge=64, le=8192)
    ui_top: float = Field(default=0.0, ge=0.0, le=0.4)
    ui_bottom: float = Field(default=0.0, ge=0.0, le=0.4)


class ExportSection(_Section):
    platforms: tuple[str, ...] = ("instagram_feed", "tiktok")
    custom_platforms: dict[str, PlatformSize] = Field(default_factory=dict)
    watermark: str | None = None
    watermark_logo: str | None = None  # a PNG under uploads/<model>/, e.g. "logo.png"; wins over the text
    watermark_position: Literal["top-left", "top-right", "bottom-left", "bottom-right", "center"] = "bottom-right"
    watermark_opacity: float = Field(default=0.7, gt=0.0, le=1.0)
    watermark_margin: float = Field(default=0.03, ge=0.0, le=0.2)  # fraction of the image width
    watermark_width: float = Field(default=0.22, ge=0.02, le=0.9)  # fraction of the image width
    creator: str | None = None  # XMP dc:creator; the model's name when unset
    hashtags: tuple[str, ...] = ()
    jpeg_quality: int = Field(default=88, ge=60, le=100)


class ModelSpec(_Section):
    model: ModelSection
    consent: ConsentSection
    swap: SwapSection = SwapSection()
    training: TrainingSection = TrainingSection()
    generation: GenerationSection = GenerationSection()
    export: ExportSection = ExportSection()

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def trigger(self) -> str:
        return self.model.trigger


def parse_manifest(text: str, source: str, expected_name: str | None = None) -> ModelSpec:
    """Parse and validate manifest text; `source` names the file in every error."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ManifestError(f"{source}: not valid TOML ({error}); fix the syntax and upload it again") from None
    try:
        spec = ModelSpec.model_validate(data)
    except ValidationError as error:
        raise ManifestError(f"{source}: " + "; ".join(_describe(e) for e in error.errors())) from None
    if expected_name is not None and spec.name != expected_name:
        raise ManifestError(
            f"{source}: [model].name is {spec.name!r} but the upload folder is {expected_name!r}; "
            "they must match"
        )
    return spec


def _describe(error: dict) -> str:
    location = list(error["loc"])
    field = _field_name(location)
    if error["type"] == "extra_forbidden":
        allowed = ", ".join(_allowed_keys(location[:-1]))
        return f"unknown key {field} (allowed here: {allowed})"
    if error["type"] == "missing":
        return f"missing required field {field}"
    return f"{field}: {error['msg']}"


def _field_name(location: list) -> str:
    section = [str(part) for part in location if not isinstance(part, int)]
    if not section:
        return "(top level)"
    if len(section) == 1:
        return f"[{section[0]}]"
    return f"[{section[0]}].{'.'.join(section[1:])}"


def _allowed_keys(parent: list) -> list[str]:
    model: type[BaseModel] = ModelSpec
    for part in parent:
        if isinstance(part, int) or part not in model.model_fields:
            break
        annotation = model.model_fields[part].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
    return list(model.model_fields)
