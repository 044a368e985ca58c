"""Renderers for the worker's `generate` command (and any command that renders): one job description,
SDXL + LoRA through diffusers on the worker image, or the stand-in generator on a simulated executor.

torch and diffusers exist only in the worker image: they are imported when DiffusersRenderer starts, never
at module import.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from modelcrew_assets.object_store import ObjectStore
from modelcrew_assets.worker.base_model import BaseModelError, image_base_model, local_base_model
from modelcrew_assets.worker.generators import DIFFUSERS, GENERATORS, STAND_IN
from modelcrew_assets.worker.jobs import SAMPLERS, RenderJob
from modelcrew_assets.worker.stand_in_generator import StandInGenerator, StandInRequest, lora_step
from modelcrew_assets.worker.train import WorkerError

GENERATOR_BASE_MODEL_ENV = "MODELCREW_GENERATOR_BASE_MODEL"


class Renderer(Protocol):
    name: str
    base_model: str

    def load_lora(self, path: Path | None) -> None:
        """Make this LoRA the active one (None: none); the previous one is unloaded."""

    def render(self, job: RenderJob) -> Image.Image: ...


class StandInRenderer:
    """The stand-in generator (simulated executors); its likeness follows the loaded LoRA's training step."""

    name = "stand-in"
    base_model = "stand-in (dry run)"

    def __init__(self, faces: Sequence[Image.Image], training: Sequence[Image.Image]):
        self.generator = StandInGenerator(faces, training)
        self.lora: Path | None = None
        self.step: int | None = None

    def load_lora(self, path: Path | None) -> None:
        self.lora, self.step = path, lora_step(path)

    def render(self, job: RenderJob) -> Image.Image:
        request = StandInRequest(
            prompt=job.prompt, seed=job.seed, width=job.width, height=job.height,
            lora_weight=job.lora_weight, step=self.step, has_lora=self.lora is not None,
        )  # fmt: skip
        return self.generator.render(request)


class DiffusersRenderer:
    """SDXL base loaded once; each LoRA loaded, used at the job's weight, then unloaded. LoRA loading
    (`load_lora_weights`, kohya's key format included) needs diffusers' PEFT backend: peft installed at
    diffusers' MIN_PEFT_VERSION or later (the worker image installs one next to kohya's pinned diffusers).
    The renderer refuses to start without it, before the base model is loaded, rather than fail at the first
    LoRA. The job's LoRA weight goes through cross_attention_kwargs={"scale": w}, which the pipeline applies
    to the UNet's and both text encoders' LoRA layers. float16 on CUDA, float32 on CPU (CPU has no fast
    float16 kernels)."""

    name = "diffusers"

    def __init__(self, base_model: str, device: str | None = None):
        torch, diffusers = diffusers_modules()
        self._torch, self._diffusers = torch, diffusers
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        self.base_model = Path(base_model).name
        pipeline = diffusers.StableDiffusionXLPipeline
        load = pipeline.from_single_file if Path(base_model).is_file() else pipeline.from_pretrained
        self.pipe = load(base_model, torch_dtype=self.dtype).to(self.device)
        self._scheduler_config = self.pipe.scheduler.config
        self._sampler: str | None = None
        self._lora = False

    def load_lora(self, path: Path | None) -> None:
        if self._lora:
            self.pipe.unload_lora_weights()
            self._lora = False
        if path is not None:
            self.pipe.load_lora_weights(str(path.parent), weight_name=path.name)
            self._lora = True

    def render(self, job: RenderJob) -> Image.Image:
        if job.sampler != self._sampler:
            class_name, options = SAMPLERS[job.sampler]
            self.pipe.scheduler = getattr(self._diffusers, class_name).from_config(self._scheduler_config, **options)
            self._sampler = job.sampler
        generator = self._torch.Generator(device=self.device).manual_seed(job.seed)
        result = self.pipe(
            prompt=job.prompt, negative_prompt=job.negative_prompt, width=job.width, height=job.height,
            num_inference_steps=job.steps, guidance_scale=job.cfg, generator=generator,
            cross_attention_kwargs={"scale": job.lora_weight} if self._lora else None,
        )  # fmt: skip
        return result.images[0]


def diffusers_modules() -> tuple[Any, Any]:
    """torch and diffusers, once it is certain that diffusers can load LoRAs here (its PEFT backend is on)."""
    try:
        import diffusers
        import torch
        from diffusers.utils import MIN_PEFT_VERSION, USE_PEFT_BACKEND, is_peft_available
    except ModuleNotFoundError as error:
        raise WorkerError(
            f"the diffusers generator needs torch and diffusers ({error.name} is missing here); they exist in "
            "the worker image (deploy/worker/Dockerfile). Run on the GPU executor, or set MODELCREW_DRY_RUN=1 "
            "for the stand-in generator"
        ) from None
    if not USE_PEFT_BACKEND:
        raise WorkerError(
            f"the diffusers generator cannot load LoRAs: diffusers {diffusers.__version__}'s PEFT backend is "
            f"off ({_peft_found(is_peft_available())}; it needs peft >= {MIN_PEFT_VERSION}). Install a "
            "matching peft into the worker image (deploy/worker/Dockerfile pins one) and rebuild it"
        )
    return torch, diffusers


def check_generator(generator: str) -> None:
    """Fail at the command's start, before any download or render, when `generator` cannot run here."""
    if generator not in GENERATORS:
        raise WorkerError(f"generator {generator!r} is unknown; use one of {', '.join(GENERATORS)}")
    if generator == DIFFUSERS:
        diffusers_modules()


def _peft_found(importable: bool) -> str:
    from importlib import metadata

    return f"peft {metadata.version('peft')} found" if importable else "peft is not installed"


def open_renderer(
    generator: str,
    store: ObjectStore,
    base_model: str | None,
    faces: Sequence[Image.Image],
    training: Sequence[Image.Image],
) -> Renderer:
    """The renderer for `generator`: the stand-in draws with the faces and training images; diffusers loads
    the base the LoRA was trained on (the manifest's base_model), else the image's own."""
    if generator == STAND_IN:
        return StandInRenderer(faces, training)
    if generator == DIFFUSERS:
        if base_model is None:
            return DiffusersRenderer(os.environ.get(GENERATOR_BASE_MODEL_ENV) or image_base_model())
        try:
            return DiffusersRenderer(local_base_model(store, base_model))
        except BaseModelError as error:
            raise WorkerError(str(error)) from None
    raise WorkerError(f"generator {generator!r} is unknown; use one of {', '.join(GENERATORS)}")
