"""kohya sd-scripts on the outside: the studio's recipe as a command line, and its tqdm progress lines.

Every flag below exists in sd-scripts' argument parsers (train_network.py, library/train_util.py) at the
commit pinned in deploy/worker/Dockerfile; the tests hold that list.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LAUNCH = "accelerate launch --num_cpu_threads_per_process 1 /opt/sd-scripts/sdxl_train_network.py"

_PROGRESS = re.compile(r"steps:\s*\d+%\|[^|]*\|\s*(\d+)/(\d+)\s*\[([^\]]*)\]")
_LOSS = re.compile(r"avr_loss=([-+0-9.eE]+|nan|inf)")
_ELAPSED = re.compile(r"^\s*([\d:]+)<([\d:?]+)")
_BATCHES = re.compile(r"num batches per epoch\b[^:]*:\s*(\d+)")

# Aspect-ratio buckets, passed on the command line (kohya's own defaults there are 256 / 1024 / 64, which
# rules out 896x1152-style buckets at 1024); kohya_dataset's histogram and dataset.toml use the same.
MIN_BUCKET_RESO = 256
MAX_BUCKET_RESO = 2048
BUCKET_RESO_STEPS = 64
# library/train_util.py IMAGE_EXTENSIONS: what kohya counts as an image in a `<repeats>_<tokens>` folder.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".PNG", ".JPG", ".JPEG", ".WEBP", ".BMP")
TRAIN_STATE = "train_state.json"


# What each optimizer needs on kohya's --optimizer_args to train a LoRA as the studio means it: Prodigy as its
# authors recommend for LoRA; Adafactor with the given learning rate instead of its own relative step (kohya
# ignores the rate otherwise).
OPTIMIZER_ARGS: dict[str, tuple[str, ...]] = {
    "Prodigy": ("decouple=True", "weight_decay=0.01", "use_bias_correction=True", "safeguard_warmup=True"),
    "Adafactor": ("scale_parameter=False", "relative_step=False", "warmup_init=False"),
}


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
    base_model: str | None = None  # a path on the GPU machine or a storage key; None: the image's SDXL base
    unet_lr: float | None = None
    text_encoder_lr: float | None = None
    network_train_unet_only: bool = False
    noise_offset: float | None = None
    min_snr_gamma: float | None = None
    caption_dropout_rate: float = 0.0
    shuffle_caption: bool = False
    keep_tokens: int = 1

    @property
    def save_steps(self) -> tuple[int, ...]:
        return tuple(range(self.save_every_n_steps, self.max_train_steps + 1, self.save_every_n_steps))

    @property
    def checkpoint_steps(self) -> tuple[int, ...]:
        """The save steps plus the last one: kohya's final `<name>.safetensors` is stored as that step."""
        steps = self.save_steps
        return steps if self.max_train_steps in steps else (*steps, self.max_train_steps)

    @property
    def state_files(self) -> tuple[str, ...]:
        """What `accelerator.save_state` leaves in a state folder for kohya's single-GPU run (accelerate 1.6.0,
        which sd-scripts pins): kohya's pre-save hook writes train_state.json first, then accelerate writes
        the network weights, optimizer, scheduler, the fp16 grad scaler if any, and the RNG states last."""
        scaler = ("scaler.pt",) if self.mixed_precision == "fp16" else ()
        return (TRAIN_STATE, "model.safetensors", "optimizer.bin", "scheduler.bin", *scaler, "random_states_0.pkl")


def one_epoch_repeats(image_count: int, repeats: int, recipe: Recipe) -> int:
    """Repeats that make kohya's first epoch hold the whole step budget (at least the dataset's own).

    kohya resumes with `--skip_until_initial_step` by skipping whole epochs and then setting global_step
    to the remainder (sd-scripts PR #1406, open at the pinned commit), so step numbers after a resume are
    right only while the saved state lies in the first epoch. The image mix is unchanged: over
    max_train_steps batches every image is still drawn max_train_steps * batch / images times."""
    needed = math.ceil(recipe.max_train_steps * recipe.train_batch_size / max(1, image_count))
    return max(repeats, needed)


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
        "--save_precision", "float" if recipe.mixed_precision == "no" else recipe.mixed_precision,
        "--gradient_checkpointing",
        "--cache_latents",
        "--resolution", f"{recipe.resolution},{recipe.resolution}",
        "--enable_bucket",
        "--min_bucket_reso", str(MIN_BUCKET_RESO),
        "--max_bucket_reso", str(MAX_BUCKET_RESO),
        "--bucket_reso_steps", str(BUCKET_RESO_STEPS),
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
    flags += _tuning_flags(recipe)
    if recipe.save_state:
        flags.append("--save_state")
    if paths.resume_state is not None:
        # Without --skip_until_initial_step kohya restarts global_step at 0 and names checkpoints anew.
        flags += ["--resume", str(paths.resume_state), "--skip_until_initial_step"]
    return flags


def _tuning_flags(recipe: Recipe) -> list[str]:
    """The [training] options a manifest may set, only where they differ from kohya's own defaults."""
    flags = []
    for name in ("unet_lr", "text_encoder_lr", "noise_offset", "min_snr_gamma"):
        value = getattr(recipe, name)
        if value is not None:
            flags += [f"--{name}", _number(value)]
    if recipe.caption_dropout_rate:
        flags += ["--caption_dropout_rate", _number(recipe.caption_dropout_rate)]
    if recipe.shuffle_caption:
        flags += ["--shuffle_caption", "--keep_tokens", str(recipe.keep_tokens)]
    if recipe.network_train_unet_only:
        flags.append("--network_train_unet_only")
    if recipe.optimizer_type in OPTIMIZER_ARGS:
        flags += ["--optimizer_args", *OPTIMIZER_ARGS[recipe.optimizer_type]]
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


def final_name(output_name: str) -> str:
    """sd-scripts' get_last_ckpt_name: the weights written when training ends."""
    return f"{output_name}.safetensors"


def final_state_name(output_name: str) -> str:
    """sd-scripts' LAST_STATE_NAME (written at the end with --save_state)."""
    return f"{output_name}-state"


@dataclass(frozen=True)
class Progress:
    step: int
    total: int
    avr_loss: float | None
    elapsed: str | None
    remaining: str | None


def global_step(progress: Progress, max_train_steps: int) -> int:
    """kohya's global_step for a tqdm update: the bar counts from 0 over max_train_steps - initial_step
    after a resume, while global_step starts at initial_step."""
    return progress.step + max_train_steps - progress.total


def parse_batches_per_epoch(line: str) -> int | None:
    """kohya's `  num batches per epoch / 1epochのバッチ数: N` line at the start of training."""
    match = _BATCHES.search(line)
    return int(match.group(1)) if match else None


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
