"""`worker batch`: a generated batch with generate.py's renderer (SDXL + the chosen LoRA, or the stand-in),
loaded once. Beyond `worker generate` it skips images already stored with their record, uploads each image
and then its provenance record the moment it is finished, and stops cleanly at the time cap (after the image
in flight).

Extras: storage_url, output_prefix, generator ("diffusers" | "stand_in"), base_model (optional path),
checkpoint {key, sha256, step}, face_keys (the stand-in's reference faces), max_gpu_minutes (optional),
jobs [ImageJob.as_dict() + image_key, record_key]: output_prefix holds every job's keys."""

from __future__ import annotations

import json
import posixpath
import tempfile
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dagster_pipes import PipesContext

from modelcrew_assets.worker.generate import JobError, RenderJob, check_generator, open_renderer, png_bytes
from modelcrew_assets.worker.messages import LOG_TAIL_LINES, RESULT
from modelcrew_assets.worker.store import WorkerStore, file_sha256
from modelcrew_assets.worker.train import WorkerError

# {"type": "generated_image", "index", "key", "sha256", "seconds"}
GENERATED_IMAGE = "generated_image"
MAX_GPU_MINUTES = "max_gpu_minutes"

# A job dict -> the finished image as PNG bytes.
Render = Callable[[Mapping[str, Any]], bytes]


@dataclass(frozen=True)
class BatchOutcome:
    rendered: int
    skipped: int
    stopped_by: str | None
    render_seconds: float


def render_batch(
    store: WorkerStore,
    render: Render,
    jobs: Sequence[Mapping[str, Any]],
    provenance: Mapping[str, Any],
    prefix: str,
    report: Callable[[dict[str, Any]], None],
    max_gpu_minutes: float | None = None,
    started: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> BatchOutcome:
    """Render every job whose image or record is not yet stored, in order. `provenance` holds the fields
    every record shares (checkpoint, base model, generator, dry_run)."""
    started = clock() if started is None else started
    stored = set(store.list_keys(prefix))
    rendered = skipped = 0
    render_seconds = 0.0
    with tempfile.TemporaryDirectory(prefix="modelcrew-batch-") as scratch:
        for job in jobs:
            index, key = int(job["index"]), job["image_key"]
            if key in stored and job["record_key"] in stored:
                skipped += 1
                continue
            if max_gpu_minutes is not None and clock() - started >= max_gpu_minutes * 60:
                return BatchOutcome(rendered, skipped, MAX_GPU_MINUTES, render_seconds)
            began = clock()
            data = render(job)
            seconds = clock() - began
            sha256 = _upload(store, Path(scratch) / f"{index:04d}.png", key, data, "image/png")
            record = {
                **{name: job[name] for name in _JOB_FIELDS},
                **provenance,
                "key": key,
                "sha256": sha256,
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "seconds": round(seconds, 3),
            }
            encoded = json.dumps(record, indent=2, sort_keys=True).encode()
            _upload(store, Path(scratch) / f"{index:04d}.json", job["record_key"], encoded, "application/json")
            rendered += 1
            render_seconds += seconds
            report({"type": GENERATED_IMAGE, "index": index, "key": key, "sha256": sha256, "seconds": round(seconds, 3)})
    return BatchOutcome(rendered, skipped, None, render_seconds)


_JOB_FIELDS = (
    "index", "prompt", "negative_prompt", "seed", "width", "height", "platform", "aspect", "sampler", "steps",
    "cfg", "lora_weight",
)


def _upload(store: WorkerStore, scratch: Path, key: str, data: bytes, content_type: str) -> str:
    scratch.write_bytes(data)
    sha256, _ = store.upload(scratch, key, content_type)
    scratch.unlink()
    return sha256


def run(pipes: PipesContext) -> None:
    started = time.monotonic()
    extras = pipes.extras
    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)

    def log(message: str) -> None:
        tail.append(message)
        pipes.log.info(message)

    def report(message: dict[str, Any]) -> None:
        pipes.report_custom_message(message)
        log(f"image {message['index']:04d} done in {message['seconds']:.1f} s")

    try:
        outcome, generator = _render_all(extras, started, log, report)
    except Exception as error:
        text = str(error) if isinstance(error, (WorkerError, JobError)) else f"{type(error).__name__}: {error}"
        pipes.report_custom_message({"type": RESULT, "ok": False, "error": text, "log_tail": list(tail)})
        raise WorkerError(text) from error
    if outcome.stopped_by:
        pipes.log.warning(f"stopped by {outcome.stopped_by} after {outcome.rendered} images; the rest waits for the next run")
    pipes.report_custom_message(
        {
            "type": RESULT, "ok": True, "error": None, "log_tail": [], "generator": generator,
            "rendered": outcome.rendered, "skipped": outcome.skipped, "stopped_by": outcome.stopped_by,
            "render_seconds": round(outcome.render_seconds, 3),
        }
    )  # fmt: skip


def _render_all(extras: Mapping[str, Any], started: float, log, report) -> tuple[BatchOutcome, str]:
    store = WorkerStore(extras["storage_url"])
    prefix: str = extras["output_prefix"]
    checkpoint = extras["checkpoint"]
    jobs = extras["jobs"]
    # Every job is checked (sampler, size) before the pipeline is loaded: nothing is spent on a bad batch.
    render_jobs = {
        int(job["index"]): RenderJob(
            id=f"{int(job['index']):04d}", prompt=job["prompt"], negative_prompt=job["negative_prompt"],
            seed=int(job["seed"]), width=int(job["width"]), height=int(job["height"]), steps=int(job["steps"]),
            cfg=float(job["cfg"]), sampler=job["sampler"], output_key=job["image_key"],
            lora_key=checkpoint["key"], lora_weight=float(job["lora_weight"]),
        )  # fmt: skip
        for job in jobs
    }
    generator = extras["generator"]
    check_generator(generator)  # before the checkpoint download
    with tempfile.TemporaryDirectory(prefix="modelcrew-batch-") as scratch_dir:
        scratch = Path(scratch_dir)
        lora = scratch / "lora" / posixpath.basename(checkpoint["key"])
        store.download(checkpoint["key"], lora)
        if file_sha256(lora) != checkpoint["sha256"]:
            raise WorkerError(
                f"{checkpoint['key']} in storage does not match the sha256 recorded for the chosen checkpoint "
                f"({checkpoint['sha256'][:12]}...); materialize lora_checkpoints and checkpoint_evaluations again"
            )
        faces = _faces(store, extras["face_keys"], scratch) if generator == "stand_in" else []
        renderer = open_renderer(generator, extras.get("base_model"), faces, [])
        renderer.load_lora(lora)
        log(f"{renderer.name} ready ({renderer.base_model}) in {time.monotonic() - started:.1f} s; {len(jobs)} images")
        provenance = {
            "checkpoint_sha256": checkpoint["sha256"],
            "checkpoint_key": checkpoint["key"],
            "base_model": renderer.base_model,
            "generator": renderer.name,
            "dry_run": generator == "stand_in",
        }

        def render(job: Mapping[str, Any]) -> bytes:
            return png_bytes(renderer.render(render_jobs[int(job["index"])]))

        outcome = render_batch(
            store, render, jobs, provenance, prefix, report, extras.get("max_gpu_minutes"), started=started
        )
    return outcome, renderer.name


def _faces(store: WorkerStore, keys: Sequence[str], scratch: Path) -> list:
    """The stand-in pastes the model's reference face into every image."""
    from PIL import Image

    faces = []
    for index, key in enumerate(keys):
        path = scratch / "faces" / f"{index:04d}-{posixpath.basename(key)}"
        store.download(key, path)
        with Image.open(path) as image:
            faces.append(image.convert("RGB"))
    return faces
