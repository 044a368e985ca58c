"""`worker train`: dataset.zip in, kohya checkpoints out, each uploaded the moment it is complete."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import zipfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from dagster_pipes import PipesContext

from modelcrew_assets.object_store import ObjectStore
from modelcrew_assets.worker.base_model import BaseModelError, local_base_model
from modelcrew_assets.worker.kohya import (
    DEFAULT_LAUNCH,
    IMAGE_EXTENSIONS,
    Recipe,
    TrainPaths,
    global_step,
    one_epoch_repeats,
    parse_batches_per_epoch,
    parse_progress,
    sample_prompt_lines,
    training_flags,
)
from modelcrew_assets.worker.messages import LOG_TAIL_LINES, TrainResult
from modelcrew_assets.worker.resume import StoredState, find_stored_state
from modelcrew_assets.worker.store import open_store
from modelcrew_assets.worker.uploader import Reporter, Uploader

LAUNCH_ENV = "MODELCREW_TRAINER_LAUNCH"  # the image's command up to sdxl_train_network.py
WORKDIR_ENV = "MODELCREW_WORKDIR"
PROGRESS_LOG_ENV = "MODELCREW_PROGRESS_LOG_SECONDS"
MAX_LOSS_POINTS = 400


class WorkerError(RuntimeError):
    """The command failed; its details were reported through Pipes."""


def run(pipes: PipesContext) -> None:
    """Trains in MODELCREW_WORKDIR, or in a temporary folder that is removed once everything is stored; after a
    failure or a cancel it is kept (and named in the log) so a person can look at what kohya left."""
    given = os.environ.get(WORKDIR_ENV)
    workdir = Path(given or tempfile.mkdtemp(prefix="modelcrew-train-"))
    reporter = Reporter(pipes)
    try:
        _train(pipes, reporter, workdir)
    except BaseException:
        if not given:
            reporter.warning(f"training folder kept for inspection: {workdir} (remove it when done)")
        raise
    if not given:
        shutil.rmtree(workdir, ignore_errors=True)


def _train(pipes: PipesContext, reporter: Reporter, workdir: Path) -> None:
    extras = pipes.extras
    store = open_store(extras["storage_url"])
    recipe = Recipe(**extras["recipe"])
    prefix: str = extras["output_prefix"]
    name: str = extras["output_name"]
    output_dir = workdir / "output"
    output_dir.mkdir(parents=True, exist_ok=True)

    stored = None
    if extras.get("resume"):
        stored = find_stored_state(store, prefix, name, recipe, output_dir)
    resumed_from = stored.step if stored else 0
    base = {"resumed_from_step": resumed_from, "resumed_checkpoints": _lineage(stored)}
    if stored is not None and stored.folder is None:
        # kohya asserts max_train_steps > the state's step: there is nothing left to train.
        reporter.log(f"a whole kohya state at step {stored.step} is stored: training has finished; not launching")
        reporter.custom(TrainResult(ok=True, finished_before_start=True, **base))
        return

    train_data_dir, layout = _unpack_dataset(store, extras["dataset_zip_key"], extras["image_folder"], workdir, recipe)
    reporter.log(
        f"kohya layout: {layout.images} images x {layout.trainer_repeats} repeats in one epoch "
        f"(dataset repeats {layout.dataset_repeats}), so a resumed state always lies in the first epoch"
    )
    prompts = workdir / "sample_prompts.txt"
    prompts.write_text(
        sample_prompt_lines(extras["sample_prompts"], extras["negative_prompt"], recipe.resolution, recipe.seed)
    )
    if stored is not None:
        reporter.log(f"resuming from kohya state at step {stored.step} ({stored.folder.name})")
    try:
        base_model = local_base_model(store, recipe.base_model)
    except BaseModelError as error:
        raise WorkerError(str(error)) from None
    paths = TrainPaths(
        base_model=base_model,
        train_data_dir=train_data_dir,
        output_dir=output_dir,
        output_name=name,
        sample_prompts=prompts,
        resume_state=stored.folder if stored else None,
    )
    command = shlex.split(os.environ.get(LAUNCH_ENV, DEFAULT_LAUNCH)) + training_flags(recipe, paths)
    reporter.log(f"starting trainer: {shlex.join(command)}")

    attempt = str(extras.get("attempt") or int(time.time()))
    uploader = Uploader(
        store, reporter, output_dir, prefix, name, recipe, attempt, stored.checkpoints if stored else None
    )
    if stored is not None:
        uploader.ignore(stored.folder)
    uploader.start()
    started = time.monotonic()
    try:
        outcome = _run_trainer(command, reporter, recipe)
    finally:
        uploader.stop()
    trainer_seconds = time.monotonic() - started
    failed = outcome.exit_code != 0
    last_step = max(outcome.loss, default=resumed_from)
    error = f"trainer exited with code {outcome.exit_code} after step {last_step}" if failed else None
    if outcome.batches_per_epoch is not None and outcome.batches_per_epoch < recipe.max_train_steps:
        reporter.warning(
            f"kohya reports {outcome.batches_per_epoch} batches per epoch, fewer than max_train_steps "
            f"{recipe.max_train_steps}: a resume from a later epoch would be numbered wrongly"
        )
    reporter.custom(
        TrainResult(
            ok=not failed,
            error=error,
            log_tail=tuple(outcome.tail),
            loss=_downsample(outcome.loss, set(recipe.checkpoint_steps)),
            trainer_seconds=round(trainer_seconds, 3),
            trainer_command=command,
            base_model=Path(paths.base_model).name,
            kohya_layout={**layout.as_dict(), "batches_per_epoch": outcome.batches_per_epoch},
            attempt=attempt,
            **base,
        )
    )
    if failed:
        raise WorkerError(f"{error}; last lines:\n" + "\n".join(outcome.tail))


def _lineage(stored: StoredState | None) -> tuple[tuple[int, str], ...] | None:
    if stored is None or not stored.lineage_known:
        return None
    return tuple(sorted(stored.checkpoints.items()))


@dataclass(frozen=True)
class KohyaLayout:
    """How the dataset's image folder was laid out for kohya (see kohya.one_epoch_repeats)."""

    images: int
    dataset_repeats: int
    trainer_repeats: int
    image_folder: str

    def as_dict(self) -> dict:
        return {
            "images": self.images,
            "dataset_repeats": self.dataset_repeats,
            "trainer_repeats": self.trainer_repeats,
            "image_folder": self.image_folder,
            "epochs": 1,
        }


def _unpack_dataset(
    store: ObjectStore, zip_key: str, image_folder: str, workdir: Path, recipe: Recipe
) -> tuple[Path, KohyaLayout]:
    archive = workdir / "dataset.zip"
    store.download(zip_key, archive)
    target = workdir / "dataset"
    with zipfile.ZipFile(archive) as bundle:
        bundle.extractall(target)
    folder = next((f for f in sorted(target.rglob("*")) if f.is_dir() and f.name == image_folder), None)
    count, _, tokens = image_folder.partition("_")
    if folder is None or not count.isdigit() or not tokens:
        raise WorkerError(f"{zip_key} has no folder {image_folder!r}; rebuild kohya_dataset for this model")
    images = sum(1 for f in folder.iterdir() if f.suffix in IMAGE_EXTENSIONS)
    if images == 0:
        raise WorkerError(f"{zip_key}: {image_folder!r} holds no images; rebuild kohya_dataset for this model")
    repeats = one_epoch_repeats(images, int(count), recipe)
    renamed = folder.with_name(f"{repeats}_{tokens}")
    if renamed != folder:
        folder.rename(renamed)
    return renamed.parent, KohyaLayout(images, int(count), repeats, renamed.name)


@dataclass
class TrainerOutcome:
    exit_code: int
    tail: deque[str]
    loss: dict[int, float]  # kohya's global_step -> avr_loss
    batches_per_epoch: int | None


def _run_trainer(command: list[str], reporter: Reporter, recipe: Recipe) -> TrainerOutcome:
    """Run the trainer, turning its output into throttled progress logs, a loss series and a log tail,
    all keyed by kohya's global_step (not the tqdm count, which restarts at 0 after a resume)."""
    throttle = float(os.environ.get(PROGRESS_LOG_ENV, "30"))
    save_steps = set(recipe.checkpoint_steps)
    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
    loss: dict[int, float] = {}
    batches: int | None = None
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
                    batches = parse_batches_per_epoch(line) or batches
                    tail.append(line)
                    last_was_progress = False
                    reporter.log(line)
                    continue
                if last_was_progress:
                    tail.pop()
                tail.append(line)
                last_was_progress = True
                step = global_step(progress, recipe.max_train_steps)
                if progress.avr_loss is not None:
                    loss[step] = progress.avr_loss
                now = time.monotonic()
                if step in save_steps or now - last_logged >= throttle:
                    last_logged = now
                    reporter.log(
                        f"step {step}/{recipe.max_train_steps} avr_loss={progress.avr_loss} "
                        f"elapsed {progress.elapsed} remaining {progress.remaining}"
                    )
        if buffer.strip():
            tail.append(buffer.decode("utf-8", "replace").rstrip())
        return TrainerOutcome(process.wait(), tail, loss, batches)
    finally:
        if process.poll() is None:
            # The trainer leads its own session: `accelerate launch` leaves its training child behind otherwise.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _downsample(loss: dict[int, float], keep: set[int]) -> list[tuple[int, float]]:
    steps = sorted(loss)
    stride = max(1, len(steps) // MAX_LOSS_POINTS)
    chosen = [s for i, s in enumerate(steps) if i % stride == 0 or s in keep or s == steps[-1]]
    return [(step, loss[step]) for step in chosen]
