"""kohya sd-scripts on the outside: the studio's recipe as a command line, and its tqdm progress lines.

Every flag below exists in sd-scripts' argument parsers (train_network.py, library/train_util.py) at the
commit pinned in deploy/worker/Dockerfile; the tests hold that list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LAUNCH = "accelerate launch --num_cpu_threads_per_process 1 /opt/sd-scripts/sdxl_train_network.py"

_PROGRESS = re.compile(r"steps:\s*\d+%\|[^|]*\|\s*(\d+)/(\d+)\s*\[([^\]]*)\]")
_LOSS = re.compile(r"avr_loss=([-+0-9.eE]+|nan|inf)")
_ELAPSED = re.compile(r"^\s*([\d:]+)<([\d:?]+)")


@dataclass(frozen=True)
class Recipe:
    """The studio's SDXL LoRA recipe (DESIGN.md); a model's [training] section overrides the numbers."""

    max_train_steps: int = 1500
    save_every_n_steps: int = 250
    network_dim: int = 16
    network_alpha: float = 16
    learning_rate: float = 1e-4
    resolution: int = 1024
    train_batch_size: int = 1
    optimizer_type: str = "AdamW8bit"
    mixed_precision: str = "bf16"
    seed: int = 42
    save_state: bool = False

    @property
    def save_steps(self) -> tuple[int, ...]:
        return tuple(range(self.save_every_n_steps, self.max_train_steps + 1, self.save_every_n_steps))


@dataclass(frozen=True)
class TrainPaths:
    base_model: str
    train_data_dir: Path
    output_dir: Path
    output_name: str
    sample_prompts: Path
    resume_state: Path | None = None


def _number(value: float) -> str:
    return f"{value:g}"


def training_flags(recipe: Recipe, paths: TrainPaths) -> list[str]:
    """The arguments after `sdxl_train_network.py`, in a fixed order."""
    flags = [
        "--pretrained_model_name_or_path", paths.base_model,
        "--train_data_dir", str(paths.train_data_dir),
        "--output_dir", str(paths.output_dir),
        "--output_name", paths.output_name,
        "--save_model_as", "safetensors",
        "--network_module", "networks.lora",
        "--network_dim", str(recipe.network_dim),
        "--network_alpha", _number(recipe.network_alpha),
        "--learning_rate", _number(recipe.learning_rate),
        "--optimizer_type", recipe.optimizer_type,
        "--mixed_precision", recipe.mixed_precision,
        "--save_precision", recipe.mixed_precision,
        "--gradient_checkpointing",
        "--cache_latents",
        "--resolution", f"{recipe.resolution},{recipe.resolution}",
        "--enable_bucket",
        "--train_batch_size", str(recipe.train_batch_size),
        "--max_train_steps", str(recipe.max_train_steps),
        "--save_every_n_steps", str(recipe.save_every_n_steps),
        "--caption_extension", ".txt",
        "--sample_every_n_steps", str(recipe.save_every_n_steps),
        "--sample_prompts", str(paths.sample_prompts),
        "--sample_sampler", "euler_a",
        "--seed", str(recipe.seed),
        "--sdpa",
    ]  # fmt: skip
    if recipe.save_state:
        flags.append("--save_state")
    if paths.resume_state is not None:
        flags += ["--resume", str(paths.resume_state)]
    return flags


def sample_prompt_lines(prompts: list[str], negative_prompt: str, resolution: int, seed: int) -> str:
    """kohya's prompt-file syntax: one prompt per line with --n/--w/--h/--d/--s/--l options."""
    negative = negative_prompt.replace("\n", " ")
    return "".join(
        f"{prompt.replace(chr(10), ' ')} --n {negative} --w {resolution} --h {resolution} "
        f"--d {seed + index} --s 28 --l 7\n"
        for index, prompt in enumerate(prompts)
    )


def checkpoint_name(output_name: str, step: int) -> str:
    """sd-scripts' STEP_FILE_NAME plus the extension."""
    return f"{output_name}-step{step:08d}.safetensors"


def state_dir_name(output_name: str, step: int) -> str:
    """sd-scripts' STEP_STATE_NAME."""
    return f"{output_name}-step{step:08d}-state"


@dataclass(frozen=True)
class Progress:
    step: int
    total: int
    avr_loss: float | None
    elapsed: str | None
    remaining: str | None


def parse_progress(line: str) -> Progress | None:
    """One tqdm update such as `steps:  17%|█▋   | 250/1500 [01:02<05:10, 4.0it/s, avr_loss=0.1]`."""
    match = _PROGRESS.search(line)
    if match is None:
        return None
    inside = match.group(3)
    loss = _LOSS.search(inside)
    timing = _ELAPSED.match(inside)
    return Progress(
        step=int(match.group(1)),
        total=int(match.group(2)),
        avr_loss=float(loss.group(1)) if loss else None,
        elapsed=timing.group(1) if timing else None,
        remaining=timing.group(2) if timing else None,
    )
