"""`worker train`: dataset.zip in, kohya checkpoints out, each uploaded the moment it is complete."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
import time
import zipfile
from collections import deque
from pathlib import Path

from dagster_pipes import PipesContext

from modelcrew_assets.worker.kohya import (
    DEFAULT_LAUNCH,
    Recipe,
    TrainPaths,
    parse_progress,
    sample_prompt_lines,
    training_flags,
)
from modelcrew_assets.worker.messages import LOG_TAIL_LINES, RESULT
from modelcrew_assets.worker.store import WorkerStore
from modelcrew_assets.worker.uploader import Reporter, Uploader

LAUNCH_ENV = "MODELCREW_TRAINER_LAUNCH"  # the image's command up to sdxl_train_network.py
BASE_MODEL_ENV = "MODELCREW_BASE_MODEL"
DEFAULT_BASE_MODEL = "/opt/models/sd_xl_base_1.0.safetensors"
WORKDIR_ENV = "MODELCREW_WORKDIR"
PROGRESS_LOG_ENV = "MODELCREW_PROGRESS_LOG_SECONDS"
MAX_LOSS_POINTS = 400
_STATE_STEP = re.compile(r"-step(\d{8})-state/")


class WorkerError(RuntimeError):
    """The command failed; its details were reported through Pipes."""


def run(pipes: PipesContext) -> None:
    extras = pipes.extras
    store = WorkerStore(extras["storage_url"])
    recipe = Recipe(**extras["recipe"])
    prefix: str = extras["output_prefix"]
    name: str = extras["output_name"]
    workdir = Path(os.environ.get(WORKDIR_ENV) or tempfile.mkdtemp(prefix="modelcrew-train-"))
    output_dir = workdir / "output"
    output_dir.mkdir(parents=True, exist_ok=True)
    reporter = Reporter(pipes)

    train_data_dir = _unpack_dataset(store, extras["dataset_zip_key"], extras["image_folder"], workdir)
    prompts = workdir / "sample_prompts.txt"
    prompts.write_text(
        sample_prompt_lines(extras["sample_prompts"], extras["negative_prompt"], recipe.resolution, recipe.seed)
    )
    resume_state, resumed_from = (None, 0)
    if extras.get("resume"):
        resume_state, resumed_from = _restore_latest_state(store, prefix, output_dir, reporter)
    paths = TrainPaths(
        base_model=os.environ.get(BASE_MODEL_ENV, DEFAULT_BASE_MODEL),
        train_data_dir=train_data_dir,
        output_dir=output_dir,
        output_name=name,
        sample_prompts=prompts,
        resume_state=resume_state,
    )
    command = shlex.split(os.environ.get(LAUNCH_ENV, DEFAULT_LAUNCH)) + training_flags(recipe, paths)
    reporter.log(f"starting trainer: {shlex.join(command)}")

    uploader = Uploader(store, reporter, output_dir, prefix, name, recipe.save_state)
    uploader.start()
    started = time.monotonic()
    try:
        exit_code, tail, loss = _run_trainer(command, reporter, recipe.save_steps)
    finally:
        uploader.stop()
    trainer_seconds = time.monotonic() - started
    failed = exit_code != 0
    last_step = max(loss, default=resumed_from)
    reporter.custom(
        {
            "type": RESULT,
            "ok": not failed,
            "error": f"trainer exited with code {exit_code} after step {last_step}" if failed else None,
            "log_tail": list(tail),
            "loss": _downsample(loss, set(recipe.save_steps)),
            "trainer_seconds": round(trainer_seconds, 3),
            "command": command,
            "base_model": Path(paths.base_model).name,
            "resumed_from_step": resumed_from,
        }
    )
    if failed:
        raise WorkerError(
            f"trainer exited with code {exit_code} after step {last_step}; last lines:\n" + "\n".join(tail)
        )


def _unpack_dataset(store: WorkerStore, zip_key: str, image_folder: str, workdir: Path) -> Path:
    archive = workdir / "dataset.zip"
    store.download(zip_key, archive)
    target = workdir / "dataset"
    with zipfile.ZipFile(archive) as bundle:
        bundle.extractall(target)
    for folder in sorted(target.rglob("*")):
        if folder.is_dir() and folder.name == image_folder:
            return folder.parent
    raise WorkerError(f"{zip_key} has no folder {image_folder!r}; rebuild kohya_dataset for this model")


def _restore_latest_state(
    store: WorkerStore, prefix: str, output_dir: Path, reporter: Reporter
) -> tuple[Path | None, int]:
    """Download the newest kohya state a previous attempt uploaded, for --resume."""
    keys = store.list_keys(prefix + "state/")
    # Only states whose train_state.json (uploaded last) arrived: a pod lost mid-upload leaves a partial one.
    steps = {int(m.group(1)) for key in keys if key.endswith("/train_state.json") and (m := _STATE_STEP.search(key))}
    if not steps:
        return None, 0
    step = max(steps)
    marker = f"-step{step:08d}-state/"
    for key in keys:
        if marker in key:
            store.download(key, output_dir / key[len(prefix + "state/") :])
    folder = next(output_dir.glob(f"*{marker.rstrip('/')}"))
    reporter.log(f"resuming from kohya state at step {step} ({folder.name})")
    return folder, step


def _run_trainer(command: list[str], reporter: Reporter, save_steps: tuple[int, ...]):
    """Run the trainer, turning its output into throttled progress logs, a loss series and a log tail."""
    throttle = float(os.environ.get(PROGRESS_LOG_ENV, "30"))
    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
    loss: dict[int, float] = {}
    last_logged = 0.0
    last_was_progress = False
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        buffer = b""
        while chunk := os.read(process.stdout.fileno(), 65536):
            buffer += chunk
            *lines, buffer = re.split(rb"[\r\n]", buffer)
            for raw in lines:
                line = raw.decode("utf-8", "replace").rstrip()
                if not line:
                    continue
                progress = parse_progress(line)
                if progress is None:
                    tail.append(line)
                    last_was_progress = False
                    reporter.log(line)
                    continue
                if last_was_progress:
                    tail.pop()
                tail.append(line)
                last_was_progress = True
                if progress.avr_loss is not None:
                    loss[progress.step] = progress.avr_loss
                now = time.monotonic()
                if progress.step in save_steps or progress.step == progress.total or now - last_logged >= throttle:
                    last_logged = now
                    reporter.log(
                        f"step {progress.step}/{progress.total} avr_loss={progress.avr_loss} "
                        f"elapsed {progress.elapsed} remaining {progress.remaining}"
                    )
        if buffer.strip():
            tail.append(buffer.decode("utf-8", "replace").rstrip())
        return process.wait(), tail, loss
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _downsample(loss: dict[int, float], keep: set[int]) -> list[list[float]]:
    steps = sorted(loss)
    stride = max(1, len(steps) // MAX_LOSS_POINTS)
    chosen = [s for i, s in enumerate(steps) if i % stride == 0 or s in keep or s == steps[-1]]
    return [[step, loss[step]] for step in chosen]

