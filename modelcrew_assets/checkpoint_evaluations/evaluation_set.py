"""The fixed evaluation set: the same prompts, seeds and sampler settings for every checkpoint. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from modelcrew_assets.handoffs import Checkpoint
from modelcrew_assets.manifest import ModelSpec
from modelcrew_assets.worker.jobs import RenderJob


@dataclass(frozen=True)
class EvalPrompt:
    name: str  # column label in the grid
    template: str  # {trigger} and {class_word} are filled from the manifest


# Each asks something different of the LoRA: the face up close, a new outfit, a scene unlike any
# training photo, and a new angle and light. A LoRA that only copies its photos fails the last three.
EVAL_PROMPTS = (
    EvalPrompt("portrait", "{trigger}, close-up portrait photo of a {class_word}, looking at the camera, soft light"),
    EvalPrompt("outfit", "{trigger}, half-body photo of a {class_word} in a red leather jacket, city street at dusk"),
    EvalPrompt("new scene", "{trigger}, photo of a {class_word} hiking on a snowy mountain ridge, bright daylight"),
    EvalPrompt("angle/light", "{trigger}, three-quarter view of a {class_word}, dramatic side lighting, dark studio"),
)
EVAL_SEEDS = (1234, 98765)
EVAL_SIZE = 1024
EVAL_SAMPLER = "dpmpp_2m_karras"
EVAL_STEPS = 30
EVAL_CFG = 7.0


def sample_key(prefix: str, step: int, prompt_index: int, seed: int) -> str:
    return f"{prefix}samples/step{step:08d}/p{prompt_index}-s{seed}.png"


def column_labels(prompts: Sequence[EvalPrompt] = EVAL_PROMPTS, seeds: Sequence[int] = EVAL_SEEDS) -> list[str]:
    return [f"{prompt.name} / {seed}" for prompt in prompts for seed in seeds]


def evaluation_jobs(
    spec: ModelSpec,
    checkpoints: Sequence[Checkpoint],
    prefix: str,
    size: int = EVAL_SIZE,
    prompts: Sequence[EvalPrompt] = EVAL_PROMPTS,
    seeds: Sequence[int] = EVAL_SEEDS,
) -> list[RenderJob]:
    """One job per checkpoint x prompt x seed, grouped by checkpoint, columns in column_labels order."""
    jobs = []
    for checkpoint in checkpoints:
        for prompt_index, prompt in enumerate(prompts):
            text = prompt.template.format(trigger=spec.trigger, class_word=spec.model.class_word)
            for seed in seeds:
                jobs.append(
                    RenderJob(
                        id=f"step{checkpoint.step:08d}-p{prompt_index}-s{seed}",
                        prompt=text,
                        negative_prompt=spec.generation.negative_prompt,
                        seed=seed,
                        width=size,
                        height=size,
                        steps=EVAL_STEPS,
                        cfg=EVAL_CFG,
                        sampler=EVAL_SAMPLER,
                        output_key=sample_key(prefix, checkpoint.step, prompt_index, seed),
                        lora_key=checkpoint.key,
                        lora_weight=1.0,
                        tags={"step": str(checkpoint.step), "prompt": prompt.name, "seed": str(seed)},
                    )
                )
    return jobs
