"""How long a training run should take, so a pod that hangs is ended near that time rather than after
a fixed three hours (RunPod bills until the pod is terminated)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from modelcrew_assets.worker.kohya import Recipe

# Seconds per kohya step for the studio's recipe at 1024x1024, batch 1 (SDXL LoRA dim 16, AdamW8bit, bf16,
# gradient checkpointing, sdpa, cached latents), by GPU name fragment. Deliberately on the slow side of
# public reports; scripts/gpu_smoke.sh prints the measured s/step of a box to correct them.
SECONDS_PER_STEP = {
    "H200": 0.5, "H100": 0.6, "A100": 0.9, "L40S": 0.9, "4090": 1.0, "L40": 1.1,
    "A6000": 1.6, "A40": 1.6, "3090": 1.6, "A5000": 2.0, "4080": 1.3,
}  # fmt: skip
UNKNOWN_GPU_SECONDS_PER_STEP = 2.0
BOOT_MINUTES = 10.0  # pod scheduling + pulling the worker image (torch + sd-scripts) + starting
MODEL_LOAD_MINUTES = 3.0  # reading SDXL base, building the network, text encoder outputs
LATENT_SECONDS_PER_IMAGE = 0.5  # --cache_latents: one VAE encode per image
SAMPLE_SECONDS = 15.0  # one 1024x1024 sample image, 28 steps
MARGIN = 1.5
FLOOR_MINUTES = 30.0


@dataclass(frozen=True)
class RuntimeEstimate:
    gpu: str
    seconds_per_step: float
    boot_minutes: float
    load_minutes: float
    training_minutes: float
    sampling_minutes: float

    @property
    def expected_minutes(self) -> float:
        return self.boot_minutes + self.load_minutes + self.training_minutes + self.sampling_minutes

    @property
    def budget_minutes(self) -> float:
        """What the executor waits before ending the machine: the expectation with a margin, and a floor."""
        return max(FLOOR_MINUTES, math.ceil(self.expected_minutes * MARGIN))

    def describe(self) -> str:
        return (
            f"{self.budget_minutes:.0f} min budget = {MARGIN}x ({self.boot_minutes:.0f} boot + "
            f"{self.load_minutes:.1f} load + {self.training_minutes:.1f} training at {self.seconds_per_step} "
            f"s/step on {self.gpu} + {self.sampling_minutes:.1f} sampling), at least {FLOOR_MINUTES:.0f}"
        )


def seconds_per_step(gpu_name: str) -> float:
    matches = [seconds for fragment, seconds in SECONDS_PER_STEP.items() if fragment in gpu_name]
    return max(matches) if matches else UNKNOWN_GPU_SECONDS_PER_STEP


def estimate_runtime(
    recipe: Recipe, image_count: int, sample_prompts: int, gpu_types: Sequence[str]
) -> RuntimeEstimate:
    """Boot + model load + steps x s/step (scaled by pixels per step) + samples, for the slowest GPU type
    the executor may fall back to."""
    slowest = max(gpu_types, key=seconds_per_step) if gpu_types else "an unknown GPU"
    per_step = seconds_per_step(slowest) if gpu_types else UNKNOWN_GPU_SECONDS_PER_STEP
    pixels = (recipe.resolution / 1024) ** 2 * recipe.train_batch_size
    samples = len(recipe.save_steps) * sample_prompts * (recipe.resolution / 1024) ** 2
    return RuntimeEstimate(
        gpu=slowest,
        seconds_per_step=per_step,
        boot_minutes=BOOT_MINUTES,
        load_minutes=MODEL_LOAD_MINUTES + image_count * LATENT_SECONDS_PER_IMAGE / 60,
        training_minutes=recipe.max_train_steps * per_step * pixels / 60,
        sampling_minutes=samples * SAMPLE_SECONDS / 60,
    )
