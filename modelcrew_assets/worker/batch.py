"""`worker batch`: a generated batch with generate.py's renderer (SDXL + the chosen LoRA, or the stand-in),
loaded once. Beyond `worker generate` it skips images already stored with their record, uploads each image
and then its provenance record the moment it is finished, and stops cleanly at the time cap (after the image
in flight).

Extras: storage_url, output_prefix, generator ("diffusers" | "stand_in"), base_model (optional path),
checkpoint {key, sha256, step}, face_keys (the stand-in's reference faces), max_gpu_minutes (optional),
jobs [jobs.BatchJob.as_dict()]: output_prefix holds every job's keys."""

from __future__ import annotations

import json
import posixpath
import tempfile
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dagster_pipes import PipesContext

from modelcrew_assets.object_store import ObjectStore, file_sha256
from modelcrew_assets.worker.generate import check_generator, open_renderer, png_bytes
from modelcrew_assets.worker.generators import STAND_IN
from modelcrew_assets.worker.jobs import BatchJob, JobError
from modelcrew_assets.worker.messages import LOG_TAIL_LINES, BatchImageStored, BatchResult
from modelcrew_assets.worker.store import open_store
from modelcrew_assets.worker.train import WorkerError

MAX_GPU_MINUTES = "max_gpu_minutes"

# A job -> the finished image as PNG bytes.
Render = Callable[[BatchJob], bytes]


@dataclass(frozen=True)
class BatchOutcome:
    rendered: int
    skipped: int
    stopped_by: str | None
    render_seconds: float


def render_batch(
    store: ObjectStore,
    render: Render,
    jobs: Sequence[BatchJob],
    provenance: Mapping[str, Any],
    stored: Collection[str],
    report: Callable[[BatchImageStored], None],
    max_gpu_minutes: float | None = None,
    started: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> BatchOutcome:
    """Render every job whose image or record is not among the `stored` keys, in order. `provenance` holds
    the fields every record shares (checkpoint, base model, generator, dry_run)."""
    started = clock() if started is None else started
    rendered = skipped = 0
    render_seconds = 0.0
    for job in jobs:
        if job.output_key in stored and job.record_key in stored:
            skipped += 1
            continue
        if max_gpu_minutes is not None and clock() - started >= max_gpu_minutes * 60:
            return BatchOutcome(rendered, skipped, MAX_GPU_MINUTES, render_seconds)
        began = clock()
        data = render(job)
        seconds = clock() - began
        sha256 = store.put_bytes(job.output_key, data, "image/png").sha256
        record = {
            **job.recorded(),
            **provenance,
            "key": job.output_key,
            "sha256": sha256,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(seconds, 3),
        }
        store.put_bytes(job.record_key, json.dumps(record, indent=2, sort_keys=True).encode(), "application/json")
        rendered += 1
        render_seconds += seconds
        report(BatchImageStored(index=job.index, key=job.output_key, sha256=sha256, seconds=round(seconds, 3)))
    return BatchOutcome(rendered, skipped, None, render_seconds)


def stored_keys(store: ObjectStore, prefix: str) -> set[str]:
    return {item.key for item in store.list(prefix)}


def run(pipes: PipesContext) -> None:
    started = time.monotonic()
    extras = pipes.extras
    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)

    def log(message: str) -> None:
        tail.append(message)
        pipes.log.info(message)

    def report(message: BatchImageStored) -> None:
        pipes.report_custom_message(message.model_dump(mode="json"))
        log(f"image {message.index:04d} done in {message.seconds:.1f} s")

    try:
        outcome = _render_all(extras, started, log, report)
    except Exception as error:
        text = str(error) if isinstance(error, (WorkerError, JobError)) else f"{type(error).__name__}: {error}"
        pipes.report_custom_message(BatchResult(ok=False, error=text, log_tail=tuple(tail)).model_dump(mode="json"))
        raise WorkerError(text) from error
    if outcome.stopped_by:
        pipes.log.warning(
            f"stopped by {outcome.stopped_by} after {outcome.rendered} images; the rest waits for the next run"
        )
    done = BatchResult(
        ok=True, generator=extras["generator"], rendered=outcome.rendered, skipped=outcome.skipped,
        stopped_by=outcome.stopped_by, render_seconds=round(outcome.render_seconds, 3),
    )  # fmt: skip
    pipes.report_custom_message(done.model_dump(mode="json"))


def _render_all(extras: Mapping[str, Any], started: float, log, report) -> BatchOutcome:
    store = open_store(extras["storage_url"])
    prefix: str = extras["output_prefix"]
    checkpoint = extras["checkpoint"]
    # Every job is checked (sampler, size) before the pipeline is loaded: nothing is spent on a bad batch.
    jobs = [BatchJob.from_mapping(job) for job in extras["jobs"]]
    generator = extras["generator"]
    check_generator(generator)  # before the checkpoint download
    # Listed once: what is stored decides both whether to load at all and which jobs to render.
    stored = stored_keys(store, prefix)
    if all(job.output_key in stored and job.record_key in stored for job in jobs):
        # A rerun after the last image was stored: no checkpoint download and no pipeline load, which on a
        # pod is a minute or more of paid GPU time for nothing.
        log(f"all {len(jobs)} images are stored already; nothing to render")
        return BatchOutcome(0, len(jobs), None, 0.0)
    with tempfile.TemporaryDirectory(prefix="modelcrew-batch-") as scratch_dir:
        scratch = Path(scratch_dir)
        lora = scratch / "lora" / posixpath.basename(checkpoint["key"])
        store.download(checkpoint["key"], lora)
        if file_sha256(lora) != checkpoint["sha256"]:
            raise WorkerError(
                f"{checkpoint['key']} in storage does not match the sha256 recorded for the chosen checkpoint "
                f"({checkpoint['sha256'][:12]}...); materialize lora_checkpoints and checkpoint_evaluations again"
            )
        faces = _faces(store, extras["face_keys"], scratch) if generator == STAND_IN else []
        renderer = open_renderer(generator, store, extras.get("base_model"), faces, [])
        renderer.load_lora(lora)
        log(f"{renderer.name} ready ({renderer.base_model}) in {time.monotonic() - started:.1f} s; {len(jobs)} images")
        provenance = {
            "checkpoint_sha256": checkpoint["sha256"],
            "checkpoint_key": checkpoint["key"],
            "base_model": renderer.base_model,
            "generator": renderer.name,
            "dry_run": generator == STAND_IN,
        }

        def render(job: BatchJob) -> bytes:
            return png_bytes(renderer.render(job))

        outcome = render_batch(
            store, render, jobs, provenance, stored, report, extras.get("max_gpu_minutes"), started=started
        )
    return outcome


def _faces(store: ObjectStore, keys: Sequence[str], scratch: Path) -> list:
    """The stand-in pastes the model's reference face into every image."""
    from PIL import Image

    faces = []
    for index, key in enumerate(keys):
        path = scratch / "faces" / f"{index:04d}-{posixpath.basename(key)}"
        store.download(key, path)
        with Image.open(path) as image:
            faces.append(image.convert("RGB"))
    return faces
