"""`worker generate`: render a list of jobs with SDXL + LoRA, upload each image the moment it is finished,
and (for checkpoint evaluation) score each checkpoint's samples against the model's reference face(s).

Extras (the whole contract; jobs.RenderJob is one job, messages.py the messages sent back):
  storage_url   s3://bucket/prefix or file://path
  generator     "diffusers" (the worker image) or "stand_in" (simulated executors), set by the executor
  base_model    path on the box (a .safetensors file or a diffusers folder); default
                $MODELCREW_GENERATOR_BASE_MODEL, else $MODELCREW_BASE_MODEL (the file kohya trains on)
  jobs          [RenderJob.as_dict(), ...]; jobs sharing a lora_key are rendered together, the LoRA loaded once
  references    {"face_keys": [...], "training_keys": [...]}: storage keys of the reference face(s) and the
                training images (the stand-in draws with them; scoring compares against them)
  score         true: after each LoRA's jobs, send a checkpoint_score message
  skip_existing true: a job whose output_key is already stored is not rendered again
Renderers (diffusers, stand-in) live in renderers.py.
"""

from __future__ import annotations

import io
import posixpath
import tempfile
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dagster_pipes import PipesContext
from PIL import Image

from modelcrew_assets.object_store import ObjectStore, file_sha256
from modelcrew_assets.worker.jobs import JobError, RenderJob
from modelcrew_assets.worker.messages import LOG_TAIL_LINES, CheckpointScored, GenerateResult, ImageRendered
from modelcrew_assets.worker.renderers import Renderer, check_generator, open_renderer
from modelcrew_assets.worker.scoring import ReferenceFaces, Sample, load_embedder
from modelcrew_assets.worker.store import open_store
from modelcrew_assets.worker.train import WorkerError


def png_bytes(image: Image.Image) -> bytes:
    # Fast compression: a few more stored bytes cost less than GPU seconds spent compressing.
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def lora_groups(jobs: Sequence[RenderJob]) -> Iterator[tuple[str | None, list[RenderJob]]]:
    """Jobs grouped by LoRA in order of first appearance, so each LoRA is loaded once."""
    order: dict[str | None, list[RenderJob]] = {}
    for job in jobs:
        order.setdefault(job.lora_key, []).append(job)
    yield from order.items()


def run(pipes: PipesContext) -> None:
    started = time.monotonic()
    extras = pipes.extras
    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
    counts = {"rendered": 0, "skipped": 0}

    def log(message: str) -> None:
        tail.append(message)
        pipes.log.info(message)

    generator = extras.get("generator", "diffusers")
    try:
        base_model = _generate(pipes, extras, log, counts)
    except Exception as error:
        text = str(error) if isinstance(error, (WorkerError, JobError)) else f"{type(error).__name__}: {error}"
        failed = GenerateResult(ok=False, error=text, log_tail=tuple(tail), generator=generator, **counts)
        pipes.report_custom_message(failed.model_dump(mode="json"))
        raise WorkerError(text) from error
    done = GenerateResult(
        ok=True, generator=generator, base_model=base_model, seconds=round(time.monotonic() - started, 3), **counts
    )
    pipes.report_custom_message(done.model_dump(mode="json"))


def _generate(pipes: PipesContext, extras: Mapping[str, Any], log, counts: dict[str, int]) -> str:
    store = open_store(extras["storage_url"])
    jobs = [RenderJob.from_mapping(job) for job in extras["jobs"]]
    duplicates = sorted(name for name, count in Counter(job.id for job in jobs).items() if count > 1)
    if duplicates:
        raise JobError(f"job ids must be unique; repeated: {', '.join(duplicates)}")
    check_generator(extras.get("generator", "diffusers"))
    references = extras.get("references") or {}
    with tempfile.TemporaryDirectory(prefix="modelcrew-generate-") as scratch_dir:
        scratch = Path(scratch_dir)
        faces = _load_images(store, references.get("face_keys") or (), scratch)
        training = _load_images(store, references.get("training_keys") or (), scratch)
        began = time.monotonic()
        renderer = open_renderer(
            extras.get("generator", "diffusers"),
            store,
            extras.get("base_model"),
            [i for _, i in faces],
            [i for _, i in training],
        )
        log(f"{renderer.name} ready ({renderer.base_model}) in {time.monotonic() - began:.1f} s; {len(jobs)} images")
        scorer = ReferenceFaces(load_embedder(), faces, training) if extras.get("score") else None
        stored = _stored_outputs(store, jobs) if extras.get("skip_existing") else set()
        for lora_key, group in lora_groups(jobs):
            renderer.load_lora(_download(store, lora_key, scratch / "lora") if lora_key else None)
            samples = []
            for job in group:
                image = _render_one(
                    pipes, store, renderer, job, job.output_key in stored, scratch, counts, scorer is not None
                )
                log(f"image {counts['rendered'] + counts['skipped']}/{len(jobs)}: {job.id}")
                if image is not None:
                    samples.append(Sample(job.id, job.prompt, job.seed, image))
            if scorer is not None:
                score = scorer.score(samples)
                scored = CheckpointScored(
                    lora_key=lora_key, identity=score.identity, face_detection_rate=score.face_detection_rate,
                    memorization=score.memorization, memorization_max=score.memorization_max,
                    cross_prompt_similarity=score.cross_prompt_similarity, embedder=score.embedder,
                    samples=[asdict(sample) for sample in score.samples],
                )  # fmt: skip
                pipes.report_custom_message(scored.model_dump(mode="json"))
                log(
                    f"scored {lora_key}: identity {score.identity:.3f} (faces {score.face_detection_rate:.0%}), "
                    f"memorization {score.memorization:.3f}, cross-prompt {score.cross_prompt_similarity:.3f}"
                )
        renderer.load_lora(None)
        return renderer.base_model


def _render_one(
    pipes, store: ObjectStore, renderer: Renderer, job: RenderJob, exists: bool, scratch: Path, counts, keep: bool
) -> Image.Image | None:
    """Render and upload one job (or, when its image is stored, fetch it only if scoring needs it);
    returns the image when `keep`."""
    path = scratch / "out.png"
    began = time.monotonic()
    image, digest, size = None, None, None
    if exists and keep:
        store.download(job.output_key, path)
        image = Image.open(path).convert("RGB")
        digest, size = file_sha256(path), path.stat().st_size
    elif not exists:
        image = renderer.render(job)
        path.write_bytes(png_bytes(image))
        put = store.put_file(job.output_key, path, "image/png")
        digest, size = put.sha256, put.size
    counts["skipped" if exists else "rendered"] += 1
    rendered = ImageRendered(
        id=job.id, key=job.output_key, sha256=digest, size=size, seed=job.seed,
        seconds=round(time.monotonic() - began, 3), lora_key=job.lora_key, tags=job.tags, skipped=exists,
    )  # fmt: skip
    pipes.report_custom_message(rendered.model_dump(mode="json"))
    path.unlink(missing_ok=True)
    return image if keep else None


def _stored_outputs(store: ObjectStore, jobs: Sequence[RenderJob]) -> set[str]:
    if not jobs:
        return set()
    folder = posixpath.commonpath([posixpath.dirname(job.output_key) for job in jobs])
    return {item.key for item in store.list(folder + "/")}


def _download(store: ObjectStore, key: str, folder: Path) -> Path:
    path = folder / posixpath.basename(key)
    store.download(key, path)
    return path


def _load_images(store: ObjectStore, keys: Sequence[str], scratch: Path) -> list[tuple[str, Image.Image]]:
    images = []
    for index, key in enumerate(keys):
        path = scratch / "inputs" / f"{index:04d}-{posixpath.basename(key)}"
        store.download(key, path)
        with Image.open(path) as image:
            images.append((key, image.convert("RGB")))
    return images
