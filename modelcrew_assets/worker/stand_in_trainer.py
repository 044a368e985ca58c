"""A stand-in for `sdxl_train_network.py` (dry-run and tests): kohya on the outside, no GPU inside.

It accepts the command line the worker builds (unknown flags are an error, as with kohya), prints tqdm
progress with a falling loss, and at every save step writes a small but valid LoRA safetensors file with
kohya-shaped tensor names and ss_* metadata, a 1024x1024 sample PNG, and (with --save_state) a state
folder that --resume picks up. Behaviour knobs, read from the environment:
  MODELCREW_STANDIN_STEP_SECONDS  seconds per step (default 0.002)
  MODELCREW_STANDIN_DIE_AT        step at which to crash with a traceback (default: never)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
import time
import zlib
from pathlib import Path

from modelcrew_assets.worker.kohya import checkpoint_name, state_dir_name

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
    for name in ("network_dim", "train_batch_size", "max_train_steps", "save_every_n_steps", "seed"):
        parse.add_argument(f"--{name}", type=int)
    parse.add_argument("--sample_every_n_steps", type=int)
    parse.add_argument("--network_alpha", type=float)
    parse.add_argument("--learning_rate", type=float)
    for name in ("gradient_checkpointing", "cache_latents", "enable_bucket", "sdpa", "save_state"):
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
        "ss_learning_rate": f"{args.learning_rate:g}",
        "ss_resolution": f"({args.resolution})",
        "ss_mixed_precision": args.mixed_precision or "no",
        "ss_seed": str(args.seed),
        "ss_base_model_version": "sdxl_base_v1-0",
        "ss_training_comment": "modelcrew stand-in trainer (dry-run)",
    }
    header = json.dumps(tensors, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + b"".join(blobs)


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


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    step_seconds = float(os.environ.get("MODELCREW_STANDIN_STEP_SECONDS", "0.002"))
    die_at = int(os.environ.get("MODELCREW_STANDIN_DIE_AT", "0") or 0)
    output = Path(args.output_dir)
    (output / "sample").mkdir(parents=True, exist_ok=True)
    start = 0
    if args.resume:
        start = json.loads((Path(args.resume) / "train_state.json").read_text())["current_step"]
        print(f"resume training from local state: {args.resume} (step {start})", file=sys.stderr, flush=True)
    total = args.max_train_steps
    prompt_count = sum(1 for line in Path(args.sample_prompts).read_text().splitlines() if line.strip())
    began = time.monotonic()
    for step in range(start + 1, total + 1):
        time.sleep(step_seconds)
        if step == die_at:
            print("Traceback (most recent call last):", file=sys.stderr)
            print("torch.OutOfMemoryError: CUDA out of memory (stand-in failure)", file=sys.stderr, flush=True)
            return 1
        loss = 0.05 + 0.1 * math.exp(-step / max(1, total / 3))
        elapsed = time.monotonic() - began
        percent = int(100 * step / total)
        sys.stderr.write(
            f"\rsteps: {percent:3d}%|{'#' * (percent // 10):<10}| {step}/{total} "
            f"[{int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}<00:00, "
            f"{1 / max(step_seconds, 1e-6):.2f}it/s, avr_loss={loss:.4f}]"
        )
        sys.stderr.flush()
        if args.sample_every_n_steps and step % args.sample_every_n_steps == 0:
            stamp = time.strftime("%Y%m%d%H%M%S")
            for index in range(prompt_count):
                name = f"{args.output_name}_{step:06d}_{index:02d}_{stamp}_{args.seed + index}.png"
                write_slowly(output / "sample" / name, grey_png(1024, (step + index) % 256), 0)
        if args.save_every_n_steps and step % args.save_every_n_steps == 0:
            data = lora_safetensors(args.network_dim, args.network_alpha, step, args)
            write_slowly(output / checkpoint_name(args.output_name, step), data, min(0.05, step_seconds * 5))
            if args.save_state:
                state = output / state_dir_name(args.output_name, step)
                state.mkdir(exist_ok=True)
                (state / "model.safetensors").write_bytes(data)
                (state / "train_state.json").write_text(json.dumps({"current_epoch": 1, "current_step": step}))
    print("\nmodel saved.", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
