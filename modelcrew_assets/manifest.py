"""ModelSpec: the validated `uploads/<model>/model.toml`. Pure: no Dagster, no I/O beyond parsing text."""

from __future__ import annotations

import re
import string
import tomllib
from datetime import date
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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
    # Target photo names (as stored under targets/, e.g. "beach.jpg") a person keeps in, or takes out of,
    # the training set whatever the quality gate's verdict.
    force_include: tuple[str, ...] = ()
    force_exclude: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _forced_once(self) -> SwapSection:
        for name in (*self.force_include, *self.force_exclude):
            if not name or "/" in name or "\\" in name:
                raise ValueError(f"force lists hold target file names such as 'beach.jpg', not {name!r}")
        both = sorted(set(self.force_include) & set(self.force_exclude))
        if both:
            raise ValueError(f"{', '.join(both)} is in both force_include and force_exclude; keep it in one")
        return self


class DatasetSection(_Section):
    """[dataset]: which swapped photos make the training set, and the face crops added to it."""

    min_photos: int = Field(default=5, ge=1, le=1000)  # fewer usable photos stop the run
    recommended_photos: int = Field(default=15, ge=1, le=1000)  # fewer give a warning
    min_short_side: int = Field(default=512, ge=256, le=4096)  # smaller photos are excluded as too small
    # A face-centred crop per usable photo: "auto" adds one where the face is small in the frame.
    face_crops: Literal["auto", "always", "never"] = "auto"
    small_face_share: float = Field(default=0.25, gt=0.0, le=1.0)  # face side / short side below this is small
    crop_scale: float = Field(default=2.5, ge=1.2, le=6.0)  # crop side = face side x this

    @model_validator(mode="after")
    def _recommended_covers_minimum(self) -> DatasetSection:
        if self.recommended_photos < self.min_photos:
            raise ValueError(
                f"recommended_photos ({self.recommended_photos}) is below min_photos ({self.min_photos}); "
                "raise it or lower min_photos"
            )
        return self


Optimizer = Literal["AdamW8bit", "AdamW", "Prodigy", "Adafactor"]
# kohya warns that Prodigy (which adapts its own step size) trains next to nothing at a learning rate of 0.1 or
# below (library/train_util.py); it is a multiplier there, around 1.0.
PRODIGY_MIN_LR = 0.1
BASE_MODEL_SUFFIXES = (".safetensors", ".ckpt")


class TrainingSection(_Section):
    """[training]: what kohya users tune, each passed to sdxl_train_network.py (worker/kohya.py)."""

    repeats: int = Field(default=30, ge=1, le=1000)
    max_train_steps: int = Field(default=1500, ge=10, le=100_000)
    save_every_n_steps: int = Field(default=250, ge=1)
    network_dim: int = Field(default=16, ge=1, le=256)
    network_alpha: float = Field(default=16, gt=0)
    # The default depends on the optimizer (1e-4, or 1.0 for Prodigy): see _rate_for_the_optimizer.
    learning_rate: float = Field(default=1e-4, gt=0, le=10)
    resolution: int = Field(default=1024, ge=256, le=2048)
    train_batch_size: int = Field(default=1, ge=1, le=64)
    # An absolute path on the GPU machine, or a storage key (e.g. "base_models/juggernaut.safetensors")
    # the worker downloads; none = the image's SDXL base.
    base_model: str | None = None
    optimizer: Optimizer = "AdamW8bit"
    unet_lr: float | None = Field(default=None, gt=0, le=10)
    text_encoder_lr: float | None = Field(default=None, ge=0, le=10)
    network_train_unet_only: bool = False
    noise_offset: float | None = Field(default=None, ge=0, le=1)
    min_snr_gamma: float | None = Field(default=None, gt=0, le=20)
    seed: int = Field(default=42, ge=0, lt=2**32)
    mixed_precision: Literal["bf16", "fp16", "no"] = "bf16"
    caption_dropout_rate: float = Field(default=0.0, ge=0, lt=1)
    shuffle_caption: bool = False
    # Comma-separated caption tokens kept in front when shuffling: the trigger word is the first one.
    keep_tokens: int = Field(default=1, ge=0, le=32)

    @model_validator(mode="before")
    @classmethod
    def _rate_for_the_optimizer(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("optimizer") == "Prodigy" and "learning_rate" not in data:
            return {**data, "learning_rate": 1.0}
        return data

    @field_validator("base_model")
    @classmethod
    def _base_model(cls, value: str | None) -> str | None:
        if value is None:
            return None
        is_path = value.startswith("/")  # on the GPU machine: a checkpoint file or a diffusers folder
        if (not is_path and not value.endswith(BASE_MODEL_SUFFIXES)) or ".." in value.split("/") or "\\" in value:
            raise ValueError(
                "must be an absolute path on the GPU machine or a storage key of an SDXL checkpoint file ending "
                f"in {' or '.join(BASE_MODEL_SUFFIXES)}, e.g. 'base_models/juggernaut_xl.safetensors'"
            )
        return value

    @model_validator(mode="after")
    def _optimizer_rates(self) -> TrainingSection:
        prodigy = self.optimizer == "Prodigy"
        rates = {"learning_rate": self.learning_rate, "unet_lr": self.unet_lr}
        for name, rate in rates.items():
            if rate is None:
                continue
            if prodigy and rate <= PRODIGY_MIN_LR:
                raise ValueError(
                    f'{name} = {rate:g} with optimizer = "Prodigy": Prodigy adapts its own step size and the '
                    "rate is a multiplier; set it around 1.0"
                )
            if not prodigy and rate >= 1:
                raise ValueError(f"{name} = {rate:g} is far too high for {self.optimizer}; 1e-4 is the usual rate")
        if prodigy and self.text_encoder_lr not in (None, self.unet_lr or self.learning_rate):
            raise ValueError(
                "Prodigy takes one learning rate (kohya uses only the first); leave text_encoder_lr out "
                "or set network_train_unet_only = true"
            )
        if self.network_train_unet_only and self.text_encoder_lr is not None:
            raise ValueError("text_encoder_lr is set but network_train_unet_only = true trains no text encoder")
        if self.shuffle_caption and self.keep_tokens < 1:
            raise ValueError(
                "shuffle_caption with keep_tokens = 0 would move the trigger word away from the front; "
                "set keep_tokens = 1 or more"
            )
        return self


# SDXL's training buckets (multiples of 64, about one megapixel) nearest each platform's aspect ratio.
ASPECT_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "4:5": (896, 1152),
    "2:3": (832, 1216),
    "9:16": (768, 1344),
}
BUILTIN_PLACEHOLDERS = ("trigger", "class_word", "name")
# The samplers the worker's renderer knows (worker/generate.py SAMPLERS).
Sampler = Literal["euler", "euler_a", "ddim", "dpmpp_2m", "dpmpp_2m_karras"]
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")


def placeholder_names(text: str) -> tuple[str, ...]:
    """The `{name}` placeholders a prompt uses; ValueError for `{}`, `{a.b}`, `{a[0]}` or a stray brace."""
    names = []
    for _, field, _, _ in string.Formatter().parse(text):
        if field is None:
            continue
        if not IDENTIFIER.fullmatch(field):
            raise ValueError(f"{{{field}}} is not a placeholder name; use {{name}}, or {{{{ }}}} for a literal brace")
        names.append(field)
    return tuple(dict.fromkeys(names))


class GenerationSection(_Section):
    prompts: tuple[str, ...] = Field(default=DEFAULT_PROMPTS, min_length=1)
    negative_prompt: str = "blurry, lowres, deformed, extra fingers, watermark, text"
    images: int = Field(default=100, ge=1, le=10_000)
    seeds: Literal["auto"] | tuple[int, ...] = "auto"
    # Values for {placeholders} in prompts besides the built-in {trigger}, {class_word} and {name}.
    placeholders: dict[str, str] = Field(default_factory=dict)
    # Target platform -> aspect; images cycle through prompts, then through these platforms.
    aspects: dict[str, Literal["1:1", "4:5", "2:3", "9:16"]] = Field(
        default_factory=lambda: {"instagram_feed": "4:5", "tiktok": "9:16"}, min_length=1
    )
    sampler: Sampler = "dpmpp_2m_karras"
    steps: int = Field(default=30, ge=1, le=150)
    cfg: float = Field(default=6.0, ge=1.0, le=30.0)
    lora_weight: float = Field(default=0.9, ge=0.0, le=2.0)
    max_images: int | None = Field(default=None, ge=1)  # rendered per run; the rest waits for the next run
    max_gpu_minutes: float | None = Field(default=None, gt=0)
    # How a batch is split across the prompts: "thompson" (by measured engagement, generated_batches/allocation.py)
    # or "even"; every prompt keeps at least exploration_floor of the batch (capped at an even share).
    allocation: Literal["thompson", "even"] = "thompson"
    exploration_floor: float = Field(default=0.1, ge=0.0, le=0.5)

    @model_validator(mode="after")
    def _prompt_pack_is_usable(self) -> GenerationSection:
        for name in self.placeholders:
            if not IDENTIFIER.fullmatch(name) or name in BUILTIN_PLACEHOLDERS:
                raise ValueError(
                    f"placeholders.{name}: names must be identifiers and not one of {', '.join(BUILTIN_PLACEHOLDERS)}"
                )
        known = (*BUILTIN_PLACEHOLDERS, *self.placeholders)
        labelled = [(f"prompts[{i}]", text) for i, text in enumerate(self.prompts)]
        for label, text in [*labelled, ("negative_prompt", self.negative_prompt)]:
            try:
                unknown = [name for name in placeholder_names(text) if name not in known]
            except ValueError as error:
                raise ValueError(f"{label} {text!r}: {error}") from None
            if unknown:
                raise ValueError(
                    f"{label} {text!r} uses unknown placeholder {{{unknown[0]}}}; known: "
                    f"{', '.join(known)} (define others under [generation.placeholders])"
                )
        if self.seeds != "auto":
            distinct = len(self.prompts) * len(self.aspects) * len(self.seeds)
            if self.images > distinct:
                raise ValueError(
                    f"images = {self.images} but prompts x aspects x seeds give only {distinct} distinct images; "
                    'add seeds, lower images, or use seeds = "auto"'
                )
        return self


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


SLOT_TIME = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")


class PostingChannel(_Section):
    """A Buffer channel: its id, or its service and name (resolved once through Buffer's channels query)."""

    id: str | None = None
    service: str | None = None  # e.g. "instagram", "tiktok"
    name: str | None = None  # the channel's display name in Buffer

    @model_validator(mode="after")
    def _named(self) -> PostingChannel:
        if not self.id and not (self.service and self.name):
            raise ValueError(
                'give the channel\'s id, or its service and name (e.g. {service = "instagram", name = "blondie"})'
            )
        return self


class PostingSection(_Section):
    """[posting]: which export platform goes to which Buffer channel, when, and as what."""

    # Export platform ([export].platforms) -> its Buffer channel; platforms without one are not posted.
    channels: dict[str, PostingChannel] = Field(default_factory=dict)
    timezone: str = "UTC"  # the model's timezone: slot times are local times there
    # Export platform -> daily slot times ("HH:MM", local); platforms not named get default_slots.
    slots: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    default_slots: tuple[str, ...] = ("09:00", "18:30")
    max_per_day: int = Field(default=2, ge=1, le=48)  # posts per platform per local day
    start_date: date | None = None  # no post before this local day
    mode: Literal["draft", "scheduled", "queue"] = "draft"
    # "captioner": the vision model the captions stage uses writes each post's caption from its picture
    # (scheduled_posts/written_captions.py); "template": post_text.py's caption from the prompt.
    captions: Literal["template", "captioner"] = "template"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not an IANA timezone; use e.g. 'Europe/Berlin' or 'America/New_York'"
            ) from None
        return value

    @field_validator("default_slots")
    @classmethod
    def _default_slot_times(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _slot_times(value)

    @field_validator("slots")
    @classmethod
    def _slot_times_per_platform(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        checked = {}
        for platform, times in value.items():
            try:
                checked[platform] = _slot_times(times)
            except ValueError as error:
                raise ValueError(f"{platform}: {error}") from None
        return checked


def _slot_times(times: tuple[str, ...]) -> tuple[str, ...]:
    bad = [time for time in times if not SLOT_TIME.fullmatch(time)]
    if bad:
        raise ValueError(f'slot times {bad} are not 24-hour HH:MM times such as "09:00" or "18:30"')
    if not times:
        raise ValueError("needs at least one slot time")
    return tuple(sorted(set(times)))


DEFAULT_MOTIONS = (
    "slow push-in",
    "hair moves gently in the wind",
    "a slight turn of the head toward the camera, then a smile",
    "slow orbit around the subject",
)


class ReelsSection(_Section):
    """[reels]: short vertical videos made from the best stills of each batch by an image-to-video API."""

    motions: tuple[str, ...] = Field(default=DEFAULT_MOTIONS, min_length=1)  # one is added to each reel's prompt
    top_n: int = Field(default=3, ge=0, le=50)  # reels per batch at most, best identity score first
    min_score: float = Field(default=0.37, ge=0.0, le=1.0)  # stills below this identity score are not animated
    provider_model: str | None = None  # e.g. "gen4_turbo", or a fal model id; None: the provider's default
    duration: int = Field(default=5, ge=1, le=10)  # seconds of video per reel (what is paid for)
    daily_budget_usd: float = Field(default=5.0, ge=0.0)  # this model's video spend per UTC day
    monthly_budget_usd: float = Field(default=50.0, ge=0.0)  # and per UTC calendar month
    music: bool = True  # a track from uploads/<model>/music/ when there is one; else silent
    platforms: tuple[str, ...] = ("instagram_reels", "tiktok")  # where scheduled_posts posts reels

    @field_validator("motions")
    @classmethod
    def _motion_phrases(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not motion.strip() or len(motion) > 200 for motion in value):
            raise ValueError('every motion must be a phrase of 1-200 characters, e.g. "slow push-in"')
        return value

    @model_validator(mode="after")
    def _budgets(self) -> ReelsSection:
        if self.monthly_budget_usd < self.daily_budget_usd:
            raise ValueError(
                f"monthly_budget_usd ({self.monthly_budget_usd}) is below daily_budget_usd ({self.daily_budget_usd})"
            )
        return self


class ModelSpec(_Section):
    model: ModelSection
    consent: ConsentSection
    swap: SwapSection = SwapSection()
    dataset: DatasetSection = DatasetSection()
    training: TrainingSection = TrainingSection()
    generation: GenerationSection = GenerationSection()
    export: ExportSection = ExportSection()
    posting: PostingSection = PostingSection()
    reels: ReelsSection = ReelsSection()

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
            f"{source}: [model].name is {spec.name!r} but the upload folder is {expected_name!r}; they must match"
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
