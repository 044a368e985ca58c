"""Prompt packs: a model's [generation] section turned into the exact list of images of one batch (pure)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from modelcrew_assets import asset_names
from modelcrew_assets.manifest import ASPECT_SIZES, BUILTIN_PLACEHOLDERS, ModelSpec, placeholder_names
from modelcrew_assets.storage_keys import asset_prefix
from modelcrew_assets.worker.jobs import BatchJob

ASSET = asset_names.GENERATED_BATCHES
BATCH_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SIZE = re.compile(r"(\d{2,4})x(\d{2,4})")
MAX_SEED = 2**63 - 1  # fits a signed 64-bit integer: JSON, SQL and torch.Generator all take it


class PromptPackError(ValueError):
    """A prompt pack that cannot be rendered; the message names the prompt and what to fix."""


def validate_batch_id(batch_id: str) -> str:
    if not BATCH_ID.fullmatch(batch_id):
        raise PromptPackError(
            f"batch id {batch_id!r} is not usable as a folder name: use 1-64 characters of letters, digits, "
            "'.', '_' or '-', starting with a letter or digit (e.g. 'nightly-2025-06-01')"
        )
    return batch_id


def derive_seed(model: str, batch_id: str, index: int) -> int:
    """The same (model, batch, index) always gives the same seed; different batches give new images."""
    digest = hashlib.sha256(f"{model}\x00{batch_id}\x00{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & MAX_SEED


def render_prompt(template: str, values: dict[str, str], label: str) -> str:
    """Fill `{name}` placeholders; an unknown one is an error naming it and the prompt."""
    try:
        names = placeholder_names(template)
    except ValueError as error:
        raise PromptPackError(f"{label} {template!r}: {error}") from None
    unknown = [name for name in names if name not in values]
    if unknown:
        raise PromptPackError(
            f"{label} {template!r} uses unknown placeholder {{{unknown[0]}}}; known: {', '.join(values)} "
            "(define others under [generation.placeholders] in model.toml)"
        )
    return template.format_map(values)


def placeholder_values(spec: ModelSpec) -> dict[str, str]:
    builtin = dict(zip(BUILTIN_PLACEHOLDERS, (spec.trigger, spec.model.class_word, spec.name), strict=True))
    return {**builtin, **spec.generation.placeholders}


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' with both sides multiples of 8 in 64..2048 (small sizes are for quick dry runs)."""
    match = SIZE.fullmatch(text.strip())
    sides = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if not all(64 <= side <= 2048 and side % 8 == 0 for side in sides):
        raise PromptPackError(
            f"image size {text!r} is not WxH with sides that are multiples of 8 between 64 and 2048 (e.g. '64x80')"
        )
    return sides


def rendered_prompts(spec: ModelSpec) -> list[str]:
    """The prompt packs with their placeholders filled: what is rendered and what engagement is kept for."""
    values = placeholder_values(spec)
    return [render_prompt(text, values, f"[generation].prompts[{i}]") for i, text in enumerate(spec.generation.prompts)]


def plan_batch(
    spec: ModelSpec, batch_id: str, size: tuple[int, int] | None = None, prompt_order: Sequence[int] | None = None
) -> tuple[BatchJob, ...]:
    """Every image of the batch, in order. Image i uses prompt i mod P (or `prompt_order[i]`, the
    allocation's split); each prompt's images cycle the platforms; the seed is derived from (model, batch,
    i), or taken from the manifest's seed list once per platform round of the prompt. `size` overrides the
    aspect buckets (used for tiny dry-run images)."""
    generation = spec.generation
    validate_batch_id(batch_id)
    values = placeholder_values(spec)
    prompts = rendered_prompts(spec)
    negative = render_prompt(generation.negative_prompt, values, "[generation].negative_prompt")
    platforms = list(generation.aspects.items())
    occurrences = [0] * len(prompts)  # with the even split, prompt p's k-th image is image k*P + p
    jobs = []
    for index in range(generation.images):
        prompt_index = prompt_order[index] if prompt_order else index % len(prompts)
        occurrence = occurrences[prompt_index]
        occurrences[prompt_index] += 1
        platform, aspect = platforms[occurrence % len(platforms)]
        if generation.seeds == "auto":
            seed = derive_seed(spec.name, batch_id, index)
        else:
            seed = generation.seeds[(occurrence // len(platforms)) % len(generation.seeds)]
        width, height = size or ASPECT_SIZES[aspect]
        jobs.append(
            BatchJob(
                id=f"{index:04d}",
                index=index,
                output_key=image_key(spec.name, batch_id, index),
                record_key=record_key(spec.name, batch_id, index),
                prompt=prompts[prompt_index],
                negative_prompt=negative,
                seed=seed,
                width=width,
                height=height,
                platform=platform,
                aspect=aspect,
                sampler=generation.sampler,
                steps=generation.steps,
                cfg=generation.cfg,
                lora_weight=generation.lora_weight,
            )
        )
    return tuple(jobs)


def batch_prefix(model: str, batch_id: str) -> str:
    return f"{asset_prefix(model, ASSET)}{batch_id}/"


def image_key(model: str, batch_id: str, index: int) -> str:
    return f"{batch_prefix(model, batch_id)}{index:04d}.png"


def record_key(model: str, batch_id: str, index: int) -> str:
    """Each image's provenance record, written by the worker right after the image itself."""
    return f"{batch_prefix(model, batch_id)}records/{index:04d}.json"


def batch_json_key(model: str, batch_id: str) -> str:
    return f"{batch_prefix(model, batch_id)}batch.json"
