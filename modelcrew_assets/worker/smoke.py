"""The GPU box smoke test behind scripts/gpu_smoke.sh: 20 real kohya steps on a tiny generated dataset,
then 4 images rendered with the result, both through the worker's own commands over a local Pipes
session, printing s/step, peak GPU memory and images/minute.

The Pipes session is the file-based one dagster-pipes ships (context and messages as files named in
DAGSTER_PIPES_CONTEXT / DAGSTER_PIPES_MESSAGES), so the box needs the worker's environment only, not
Dagster. Storage is a local `file://` folder. Nothing is downloaded: the base model is
$MODELCREW_BASE_MODEL and kohya is $MODELCREW_TRAINER_LAUNCH.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, DAGSTER_PIPES_MESSAGES_ENV_VAR, encode_param

from modelcrew_assets.worker.base_model import BASE_MODEL_ENV
from modelcrew_assets.worker.kohya import Recipe

LAUNCH_ENV = "MODELCREW_TRAINER_LAUNCH"
STEPS = 20
IMAGES = 4
MODEL = "smoke"
FOLDER = f"10_{MODEL} woman"
PROMPT = f"{MODEL}, a photo of a woman, studio light"
_STEP_LOG = re.compile(r"^step (\d+)/\d+ .*elapsed (\d+):(\d+)")
EXIT_NOT_READY = 2
log = logging.getLogger("modelcrew.gpu_smoke")


class SmokeError(RuntimeError):
    """A worker command failed; the message holds its error and last lines."""


def preflight(environ: Mapping[str, str], which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """What keeps this box from running the smoke test; empty when it can."""
    problems = []
    smi = which("nvidia-smi")
    if smi is None:
        problems.append("no NVIDIA GPU: nvidia-smi is not on PATH (run this on the GPU box)")
    else:
        listed = subprocess.run([smi, "-L"], check=False, capture_output=True, text=True, timeout=30)
        if listed.returncode != 0 or "GPU" not in listed.stdout:
            problems.append(f"nvidia-smi lists no GPU ({(listed.stderr or listed.stdout).strip()[:200]})")
    launch = environ.get(LAUNCH_ENV, "").strip()
    if not launch:
        problems.append(f"{LAUNCH_ENV} is not set (the command up to sdxl_train_network.py)")
    else:
        script = next((part for part in shlex.split(launch) if part.endswith(".py")), None)
        if script is not None and not Path(script).is_file():
            problems.append(f"{LAUNCH_ENV} names {script}, which does not exist")
        elif script is None and which(shlex.split(launch)[0]) is None:
            problems.append(f"{LAUNCH_ENV}: {shlex.split(launch)[0]} is not on PATH")
    base = environ.get(BASE_MODEL_ENV, "").strip()
    if not base:
        problems.append(f"{BASE_MODEL_ENV} is not set (path of the SDXL base .safetensors; nothing is downloaded)")
    elif not Path(base).exists():
        problems.append(f"{BASE_MODEL_ENV} is {base}, which does not exist")
    return problems


def tiny_dataset(count: int = IMAGES, side: int = 1024) -> bytes:
    """A kohya_dataset-shaped zip (img/<repeats>_<trigger> <class>/*.jpg + .txt) of generated pictures."""
    from PIL import Image, ImageDraw

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for index in range(count):
            image = Image.new("RGB", (side, side), (40 + 50 * index, 90, 160 - 30 * index))
            draw = ImageDraw.Draw(image)
            draw.ellipse((side * 0.3, side * 0.15, side * 0.7, side * 0.65), fill=(225, 190, 165))
            draw.rectangle((side * 0.25, side * 0.65, side * 0.75, side), fill=(30 * index, 60, 120))
            encoded = io.BytesIO()
            image.save(encoded, format="JPEG", quality=90)
            bundle.writestr(f"img/{FOLDER}/{index:03d}.jpg", encoded.getvalue())
            bundle.writestr(f"img/{FOLDER}/{index:03d}.txt", f"{PROMPT}, picture {index}\n")
    return buffer.getvalue()


def pipes_env(workdir: Path, name: str, extras: Mapping[str, Any]) -> tuple[dict[str, str], Path]:
    """Bootstrap env for dagster-pipes' file context loader and file message writer."""
    context = {
        "asset_keys": [name], "code_version_by_asset_key": None, "provenance_by_asset_key": None,
        "partition_key": MODEL, "partition_key_range": None, "partition_time_window": None,
        "run_id": f"gpu-smoke-{int(time.time())}", "job_name": "gpu_smoke", "retry_number": 0,
        "extras": dict(extras),
    }  # fmt: skip
    context_path, messages = workdir / f"{name}-context.json", workdir / f"{name}-messages.jsonl"
    context_path.write_text(json.dumps(context))
    env = {
        DAGSTER_PIPES_CONTEXT_ENV_VAR: encode_param({"path": str(context_path)}),
        DAGSTER_PIPES_MESSAGES_ENV_VAR: encode_param({"path": str(messages)}),
    }
    return env, messages


def read_messages(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def custom(messages: Sequence[dict], kind: str) -> list[dict]:
    found = [m.get("params", {}).get("payload") for m in messages if m.get("method") == "report_custom_message"]
    return [payload for payload in found if isinstance(payload, dict) and payload.get("type") == kind]


def logs(messages: Sequence[dict]) -> list[str]:
    return [m["params"]["message"] for m in messages if m.get("method") == "log"]


def seconds_per_step(log_lines: Sequence[str], after_step: int = 0) -> float | None:
    """From the worker's progress logs (tqdm's elapsed, whole seconds): the time between the first and the
    last logged step past `after_step`. kohya samples and saves right after a step's bar update, so
    starting past the last save before the end leaves sampling out."""
    points = [(int(m[1]), 60 * int(m[2]) + int(m[3])) for line in log_lines if (m := _STEP_LOG.match(line))]
    points = [point for point in points if point[0] > after_step]
    if len(points) < 2 or points[-1][0] == points[0][0]:
        return None
    return (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])


def images_per_minute(image_messages: Sequence[dict]) -> float | None:
    seconds = sum(float(m.get("seconds") or 0) for m in image_messages if not m.get("skipped"))
    return 60 * len(image_messages) / seconds if image_messages and seconds > 0 else None


class GpuMemorySampler:
    """Peak used GPU memory (MiB, the whole GPU as nvidia-smi reports it) while the block runs."""

    def __init__(self, which: Callable[[str], str | None] = shutil.which, every: float = 0.5):
        self.smi, self.every, self.peak_mib = which("nvidia-smi"), every, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Self:
        if self.smi:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.smi:
            self._thread.join()

    def _loop(self) -> None:
        query = [self.smi, "--query-gpu=memory.used", "--format=csv,noheader,nounits"]
        while not self._stop.is_set():
            done = subprocess.run(query, check=False, capture_output=True, text=True, timeout=30)
            used = [int(v) for v in done.stdout.split() if v.strip().isdigit()]
            if used:
                self.peak_mib = max(self.peak_mib or 0, max(used))
            self._stop.wait(self.every)


def run_worker(command: str, workdir: Path, extras: Mapping[str, Any], env: Mapping[str, str]) -> list[dict]:
    """`python -m modelcrew_assets.worker <command>` under a local Pipes session; its messages."""
    bootstrap, messages_path = pipes_env(workdir, command, extras)
    done = subprocess.run(
        [sys.executable, "-m", "modelcrew_assets.worker", command], env={**os.environ, **env, **bootstrap},
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    messages = read_messages(messages_path)
    results = custom(messages, "result")
    if done.returncode != 0 or not results or not results[-1].get("ok"):
        error = results[-1].get("error") if results else None
        tail = "\n".join((results[-1].get("log_tail") or [])[-15:]) if results else done.stderr[-3000:]
        raise SmokeError(f"worker {command} failed (exit {done.returncode}): {error}\n{tail}")
    return messages


@dataclass(frozen=True)
class SmokeFigures:
    steps: int
    seconds_per_step: float | None
    trainer_seconds: float
    peak_gpu_memory_mib: int | None
    images: int
    images_per_minute: float | None
    checkpoint_key: str

    def lines(self) -> list[str]:
        per_step = f"{self.seconds_per_step:.2f}" if self.seconds_per_step is not None else "n/a"
        rate = f"{self.images_per_minute:.1f}" if self.images_per_minute is not None else "n/a"
        memory = f"{self.peak_gpu_memory_mib} MiB" if self.peak_gpu_memory_mib is not None else "n/a"
        return [
            f"s/step: {per_step} ({self.steps} kohya steps, trainer {self.trainer_seconds:.0f} s with model load)",
            f"peak GPU memory: {memory}",
            f"images/minute: {rate} ({self.images} images at 1024x1024, 28 steps)",
            f"checkpoint: {self.checkpoint_key}",
        ]


def smoke(workdir: Path, env: Mapping[str, str], generator: str = "diffusers", steps: int = STEPS) -> SmokeFigures:
    """Train `steps` kohya steps, then render IMAGES images with the last checkpoint."""
    store_root = workdir / "storage"
    (store_root / "dataset").mkdir(parents=True, exist_ok=True)
    (store_root / "dataset" / "dataset.zip").write_bytes(tiny_dataset())
    recipe = Recipe(max_train_steps=steps, save_every_n_steps=steps // 2)
    train_env = {**env, "MODELCREW_PROGRESS_LOG_SECONDS": "0", "MODELCREW_WATCH_SECONDS": "1"}
    train_extras = {
        "storage_url": f"file://{store_root}", "dataset_zip_key": "dataset/dataset.zip", "image_folder": FOLDER,
        "output_prefix": "lora/", "output_name": MODEL, "recipe": asdict(recipe), "sample_prompts": [PROMPT],
        "negative_prompt": "blurry", "resume": False, "attempt": "smoke",
    }  # fmt: skip
    with GpuMemorySampler() as memory:
        trained = run_worker("train", workdir, train_extras, train_env)
        checkpoints = sorted(custom(trained, "checkpoint"), key=lambda m: m["step"])
        if not checkpoints:
            raise SmokeError("worker train reported no checkpoint")
        last = checkpoints[-1]["key"]
        jobs = [render_job(seed, last) for seed in range(IMAGES)]
        training = [f"dataset/{index:03d}.jpg" for index in range(IMAGES)]
        _unpack_references(store_root, training)
        references = {"face_keys": training[:1], "training_keys": training}
        rendered = run_worker("generate", workdir, {"storage_url": f"file://{store_root}", "generator": generator, "jobs": jobs, "references": references}, env)  # fmt: skip
    result = custom(trained, "result")[-1]
    images = custom(rendered, "image")
    return SmokeFigures(
        steps=steps,
        seconds_per_step=seconds_per_step(logs(trained), max((s for s in recipe.save_steps if s < steps), default=0)),
        trainer_seconds=float(result.get("trainer_seconds") or 0),
        peak_gpu_memory_mib=memory.peak_mib,
        images=len(images),
        images_per_minute=images_per_minute(images),
        checkpoint_key=last,
    )


def render_job(seed: int, lora_key: str) -> dict:
    return {
        "id": f"smoke-{seed}", "prompt": PROMPT, "negative_prompt": "blurry", "seed": seed, "width": 1024,
        "height": 1024, "steps": 28, "cfg": 7.0, "sampler": "euler_a", "output_key": f"render/{seed}.png",
        "lora_key": lora_key,
    }  # fmt: skip


def _unpack_references(store_root: Path, keys: Sequence[str]) -> None:
    with zipfile.ZipFile(store_root / "dataset" / "dataset.zip") as bundle:
        for index, key in enumerate(keys):
            (store_root / key).write_bytes(bundle.read(f"img/{FOLDER}/{index:03d}.jpg"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/gpu_smoke.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, help="keep the files here (default: a temporary folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="gpu_smoke: %(message)s", stream=sys.stdout)
    problems = preflight(os.environ)
    if problems:
        log.error("this box cannot run the smoke test:\n%s", "\n".join(f"  - {p}" for p in problems))
        return EXIT_NOT_READY
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="modelcrew-gpu-smoke-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log.info("training %d kohya steps and rendering %d images in %s", STEPS, IMAGES, workdir)
    try:
        figures = smoke(workdir, {})
    except SmokeError as error:
        log.error("FAILED: %s", error)
        return 1
    log.info("OK\n%s", "\n".join(f"  {line}" for line in figures.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
