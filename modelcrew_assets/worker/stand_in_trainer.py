"""A stand-in for `sdxl_train_network.py` (simulated executors and tests): kohya on the outside, no GPU inside.

It accepts the command line the worker builds (unknown flags are an error, as with kohya) and numbers
steps as train_network.py does at the pinned commit: one epoch = the images x repeats of every
`<repeats>_<tokens>` folder / batch size (one bucket: images are not decoded); `--resume` reads
train_state.json's current_step S; without --skip_until_initial_step it skips S // N epochs and restarts
global_step at 0; with it global_step starts at S mod N (whole epochs are subtracted, PR #1406) and
that many batches are skipped; the tqdm bar counts 0..max_train_steps - initial_step; resuming a state at
max_train_steps fails kohya's assertion. Saves at global_step % save_every_n_steps == 0 write a small but
valid LoRA file with kohya-shaped tensor names and ss_* metadata, samples (1024x1024 PNGs) and, with
--save_state, accelerate's state folder, train_state.json first and the other files slowly after it;
at the end `<name>.safetensors` and (with --save_state) `<name>-state`. Knobs, from the environment:
  MODELCREW_STANDIN_STEP_SECONDS  seconds per step (default 0.002)
  MODELCREW_STANDIN_DIE_AT        global step at which to crash with a traceback (default: never)
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import struct
import sys
import time
import zipfile
import zlib
from pathlib import Path

from modelcrew_assets.worker.kohya import (
    IMAGE_EXTENSIONS,
    TRAIN_STATE,
    Recipe,
    checkpoint_name,
    final_name,
    final_state_name,
    state_dir_name,
)

LORA_BLOCKS = (
    "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q",
    "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_k",
    "lora_unet_middle_block_1_transformer_blocks_0_attn2_to_v",
    "lora_unet_output_blocks_0_1_transformer_blocks_0_attn1_to_out_0",
)
IN_FEATURES = 64


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="sdxl_train_network.py (stand-in)")
    for name in (
        "pretrained_model_name_or_path", "train_data_dir", "output_dir", "output_name", "save_model_as",
        "network_module", "optimizer_type", "mixed_precision", "save_precision", "resolution",
        "caption_extension", "sample_prompts", "sample_sampler", "resume",
    ):  # fmt: skip
        parse.add_argument(f"--{name}")
    for name in ("network_dim", "max_train_steps", "save_every_n_steps", "seed", "sample_every_n_steps"):
        parse.add_argument(f"--{name}", type=int)
    # kohya's command-line defaults
    parse.add_argument("--train_batch_size", type=int, default=1)
    parse.add_argument("--min_bucket_reso", type=int, default=256)
    parse.add_argument("--max_bucket_reso", type=int, default=1024)
    parse.add_argument("--bucket_reso_steps", type=int, default=64)
    parse.add_argument("--network_alpha", type=float)
    parse.add_argument("--learning_rate", type=float)
    for name in ("unet_lr", "noise_offset", "min_snr_gamma"):
        parse.add_argument(f"--{name}", type=float)
    parse.add_argument("--text_encoder_lr", type=float, nargs="*")
    parse.add_argument("--caption_dropout_rate", type=float, default=0.0)
    parse.add_argument("--keep_tokens", type=int, default=0)
    parse.add_argument("--optimizer_args", nargs="*", default=[])
    flags = (
        "gradient_checkpointing",
        "cache_latents",
        "enable_bucket",
        "sdpa",
        "save_state",
        "skip_until_initial_step",
        "shuffle_caption",
        "network_train_unet_only",
    )
    for name in flags:
        parse.add_argument(f"--{name}", action="store_true")
    return parse


def lora_safetensors(dim: int, alpha: float, step: int, args: argparse.Namespace) -> bytes:
    tensors, blobs, offset = {}, [], 0
    for block in LORA_BLOCKS:
        shapes = (("lora_down.weight", [dim, IN_FEATURES]), ("lora_up.weight", [IN_FEATURES, dim]), ("alpha", []))
        for suffix, shape in shapes:
            count = math.prod(shape) if shape else 1
            data = struct.pack(f"<{count}e", *[((i * 7 + step) % 13 - 6) / 100 for i in range(count)])
            span = [offset, offset + len(data)]
            tensors[f"{block}.{suffix}"] = {"dtype": "F16", "shape": shape, "data_offsets": span}
            blobs.append(data)
            offset += len(data)
    tensors["__metadata__"] = {
        "ss_network_module": args.network_module or "networks.lora",
        "ss_network_dim": str(dim),
        "ss_network_alpha": f"{alpha:g}",
        "ss_output_name": args.output_name,
        "ss_steps": str(step),
        "ss_max_train_steps": str(args.max_train_steps),
        "ss_learning_rate": str(args.learning_rate),
        "ss_resolution": f"({args.resolution})",
        "ss_mixed_precision": args.mixed_precision or "no",
        "ss_seed": str(args.seed),
        "ss_base_model_version": "sdxl_base_v1-0",
        "ss_training_comment": "modelcrew stand-in trainer (dry-run)",
        **tuning_metadata(args),
    }
    header = json.dumps(tensors, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + b"".join(blobs)


# The optimizer classes kohya's get_optimizer picks (library/train_util.py), by --optimizer_type.
OPTIMIZER_CLASSES = {
    "AdamW8bit": "bitsandbytes.optim.adamw.AdamW8bit",
    "AdamW": "torch.optim.adamw.AdamW",
    "Prodigy": "prodigyopt.prodigy.Prodigy",
    "Adafactor": "transformers.optimization.Adafactor",
}


def tuning_metadata(args: argparse.Namespace) -> dict[str, str]:
    """The ss_* keys train_network.py writes for the tunable options, as it writes them: str() of each value
    (None included); the optimizer as `<module>.<class>(k=v,...)` from --optimizer_args."""
    optimizer = OPTIMIZER_CLASSES.get(args.optimizer_type or "AdamW8bit", args.optimizer_type)
    if args.optimizer_args:
        optimizer += f"({','.join(args.optimizer_args)})"
    base = args.pretrained_model_name_or_path or ""
    return {
        "ss_optimizer": optimizer,
        "ss_unet_lr": str(args.unet_lr),
        "ss_text_encoder_lr": str(args.text_encoder_lr[0] if args.text_encoder_lr else None),
        "ss_noise_offset": str(args.noise_offset),
        "ss_min_snr_gamma": str(args.min_snr_gamma),
        "ss_caption_dropout_rate": str(args.caption_dropout_rate),
        "ss_shuffle_caption": str(args.shuffle_caption),
        "ss_keep_tokens": str(args.keep_tokens),
        "ss_sd_model_name": os.path.basename(base) if os.path.exists(base) else base,
    }


def grey_png(side: int, shade: int) -> bytes:
    raw = b"".join(b"\x00" + bytes([shade]) * side for _ in range(side))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def write_slowly(path: Path, data: bytes, pause: float) -> None:
    """Written in two halves, like a trainer flushing a big file, so readers can see it incomplete."""
    with path.open("wb") as handle:
        handle.write(data[: len(data) // 2])
        handle.flush()
        time.sleep(pause)
        handle.write(data[len(data) // 2 :])


def torch_zip(payload: bytes) -> bytes:
    """What torch.save writes: a zip archive (its end record comes last, so a cut file is no zip)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


def batches_per_epoch(train_data_dir: Path, batch_size: int) -> int:
    """len(train_dataloader): images x repeats of every `<repeats>_<tokens>` folder, in batches."""
    total = 0
    for folder in sorted(p for p in train_data_dir.iterdir() if p.is_dir()):
        count, _, tokens = folder.name.partition("_")
        if count.isdigit() and tokens:
            total += int(count) * sum(1 for f in folder.iterdir() if f.suffix in IMAGE_EXTENSIONS)
    return math.ceil(total / batch_size)


def load_state(folder: Path, recipe: Recipe) -> int:
    """accelerator.load_state: every file must be there (it raises otherwise); kohya reads current_step."""
    for name in recipe.state_files:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"[Errno 2] No such file or directory: '{folder / name}'")
    return json.loads((folder / TRAIN_STATE).read_text())["current_step"]


def save_state(folder: Path, recipe: Recipe, epoch: int, step: int, weights: bytes, pause: float) -> None:
    """kohya's pre-save hook writes train_state.json, then accelerate writes the rest, RNG states last."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / TRAIN_STATE).write_text(json.dumps({"current_epoch": epoch, "current_step": step}))
    for name in recipe.state_files[1:]:
        data = weights if name.endswith(".safetensors") else torch_zip(f"{name} at {step}".encode() * 64)
        write_slowly(folder / name, data, pause)


def fail(lines: list[str]) -> int:
    print("Traceback (most recent call last):", file=sys.stderr)
    for line in lines:
        print(line, file=sys.stderr, flush=True)
    return 1


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    step_seconds = float(os.environ.get("MODELCREW_STANDIN_STEP_SECONDS", "0.002"))
    die_at = int(os.environ.get("MODELCREW_STANDIN_DIE_AT", "0") or 0)
    recipe = Recipe(mixed_precision=args.mixed_precision or "no")  # for the state files accelerate writes
    output = Path(args.output_dir)
    (output / "sample").mkdir(parents=True, exist_ok=True)
    batches = batches_per_epoch(Path(args.train_data_dir), args.train_batch_size)
    if batches == 0:
        return fail(["ValueError: no images in train_data_dir (stand-in)"])
    epochs = math.ceil(args.max_train_steps / batches)
    print(f"  num batches per epoch / 1epochのバッチ数: {batches}", flush=True)
    print(f"  num epochs / epoch数: {epochs}", flush=True)
    initial_step = 0
    if args.resume:
        print(f"resume training from local state: {args.resume}", file=sys.stderr, flush=True)
        initial_step = load_state(Path(args.resume), recipe)
    if initial_step > 0 and not args.max_train_steps > initial_step:
        message = (
            "AssertionError: max_train_steps should be greater than initial step / "
            f"max_train_stepsは初期ステップより大きい必要があります: {args.max_train_steps} vs {initial_step}"
        )
        return fail([message])
    epoch_to_start = initial_step // batches
    if not args.skip_until_initial_step:
        initial_step = 0  # kohya only skips the epochs, "for informative purpose"
    global_step = 0
    if initial_step > 0:
        for _ in range(epoch_to_start):
            initial_step -= batches
        global_step = initial_step
    total = args.max_train_steps - initial_step
    prompt_count = sum(1 for line in Path(args.sample_prompts).read_text().splitlines() if line.strip())
    pause = min(0.05, step_seconds * 5)
    began, shown = time.monotonic(), 0
    for epoch in range(epoch_to_start, epochs):
        skip, initial_step = initial_step, 0
        for _ in range(skip, batches):
            time.sleep(step_seconds)
            global_step += 1
            shown += 1
            if global_step == die_at:
                return fail(["torch.OutOfMemoryError: CUDA out of memory (stand-in failure)"])
            loss = 0.05 + 0.1 * math.exp(-global_step / max(1, args.max_train_steps / 3))
            elapsed = time.monotonic() - began
            percent = int(100 * shown / total)
            sys.stderr.write(
                f"\rsteps: {percent:3d}%|{'#' * (percent // 10):<10}| {shown}/{total} "
                f"[{int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}<00:00, "
                f"{1 / max(step_seconds, 1e-6):.2f}it/s, avr_loss={loss:.4f}]"
            )
            sys.stderr.flush()
            if args.sample_every_n_steps and global_step % args.sample_every_n_steps == 0:
                stamp = time.strftime("%Y%m%d%H%M%S")
                for index in range(prompt_count):
                    name = f"{args.output_name}_{global_step:06d}_{index:02d}_{stamp}_{args.seed + index}.png"
                    write_slowly(output / "sample" / name, grey_png(1024, (global_step + index) % 256), 0)
            if args.save_every_n_steps and global_step % args.save_every_n_steps == 0:
                weights = lora_safetensors(args.network_dim, args.network_alpha, global_step, args)
                write_slowly(output / checkpoint_name(args.output_name, global_step), weights, pause)
                if args.save_state:
                    state = output / state_dir_name(args.output_name, global_step)
                    save_state(state, recipe, epoch + 1, global_step, weights, pause)
            if global_step >= args.max_train_steps:
                break
    weights = lora_safetensors(args.network_dim, args.network_alpha, global_step, args)
    if args.save_state:
        save_state(output / final_state_name(args.output_name), recipe, epochs, global_step, weights, pause)
    write_slowly(output / final_name(args.output_name), weights, pause)
    print("\nmodel saved.", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
