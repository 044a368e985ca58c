"""What a batch already has in storage, what is left to render, and what the rest will cost."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from modelcrew_assets.costs import CostEstimate
from modelcrew_assets.generated_batches.prompt_packs import batch_prefix
from modelcrew_assets.handoffs import GeneratedImage
from modelcrew_assets.object_store import Storage
from modelcrew_assets.worker.jobs import BatchJob, ImageSettings

# GPU seconds per sampling step per megapixel for SDXL on a 24-48 GB card (RTX 4090 / L40S / A6000 class),
# used until a model has a measured batch. Plus the time to start the machine and load the pipeline.
SECONDS_PER_STEP_MEGAPIXEL = 0.25
STARTUP_SECONDS = 180.0


class BatchMismatchError(RuntimeError):
    """Stored images of a batch were made with other settings than the batch asks for now."""


@dataclass(frozen=True)
class BatchProgress:
    done: dict[int, GeneratedImage]  # index -> record, for images whose file and record are both stored
    unrecorded: tuple[str, ...]  # image files without a record (rendered again, same seed)


@dataclass(frozen=True)
class Estimate:
    images: int
    seconds_per_image: float
    gpu_minutes: float
    cost_usd: float
    basis: str

    def describe(self) -> str:
        return (
            f"{self.images} images x {self.seconds_per_image:.1f} s (+{STARTUP_SECONDS / 60:.0f} min start-up) "
            f"~ {self.gpu_minutes:.1f} GPU minutes, ~ ${self.cost_usd:.2f} ({self.basis})"
        )

    def cost(self) -> CostEstimate:
        return CostEstimate(usd=self.cost_usd, basis=self.describe(), gpu_minutes=self.gpu_minutes)


def read_progress(storage: Storage, model: str, batch_id: str) -> BatchProgress:
    """An image counts as done only when its file and its provenance record are both in storage."""
    prefix = batch_prefix(model, batch_id)
    keys = {item.key for item in storage.list(prefix)}
    done: dict[int, GeneratedImage] = {}
    for key in sorted(k for k in keys if k.startswith(prefix + "records/") and k.endswith(".json")):
        try:
            record = GeneratedImage.model_validate_json(storage.get_bytes(key))
        except ValidationError:
            continue  # a damaged record: the image is rendered again and the record rewritten
        if record.key in keys:
            done[record.index] = record
    recorded = {record.key for record in done.values()}
    unrecorded = tuple(sorted(k for k in keys if k.endswith(".png") and "/records/" not in k and k not in recorded))
    return BatchProgress(done=done, unrecorded=unrecorded)


def check_resumable(
    batch_id: str, jobs: Sequence[BatchJob], done: dict[int, GeneratedImage], checkpoint_sha256: str
) -> None:
    """A resumed batch must finish the way it started: same prompt, seed, size, settings and checkpoint."""
    planned = {job.index: job for job in jobs}
    changed = sorted(
        index
        for index, record in done.items()
        if index in planned and not _same(planned[index], record, checkpoint_sha256)
    )
    if changed:
        first = done[changed[0]]
        raise BatchMismatchError(
            f"batch {batch_id!r}: {len(changed)} stored image(s) (first {first.key}) were rendered with other "
            "settings (prompt, seed, size, sampler, steps, cfg, LoRA weight or checkpoint) than the batch asks "
            "for now; use a new batch_id for the new settings, or restore the manifest and checkpoint this "
            "batch started with"
        )


def _same(job: BatchJob, record: GeneratedImage, checkpoint_sha256: str) -> bool:
    """Every setting that decides the image (ImageSettings' fields) as recorded, and the same checkpoint."""
    return record.checkpoint_sha256 == checkpoint_sha256 and all(
        _equal(getattr(job, name), getattr(record, name)) for name in ImageSettings.model_fields
    )


def _equal(planned: object, recorded: object) -> bool:
    if isinstance(planned, float):
        return abs(planned - float(recorded)) < 1e-9
    return planned == recorded


def estimate(jobs: Sequence[BatchJob], measured_seconds_per_image: float | None, dollars_per_hour: float) -> Estimate:
    """Time and cost of rendering `jobs`: the model's last measured speed, else the per-step figure."""
    if measured_seconds_per_image:
        per_image, basis = measured_seconds_per_image, "measured on this model's last batch"
    else:
        steps_megapixels = sum(job.steps * job.width * job.height / 2**20 for job in jobs)
        per_image = SECONDS_PER_STEP_MEGAPIXEL * steps_megapixels / max(1, len(jobs))
        basis = f"default {SECONDS_PER_STEP_MEGAPIXEL} s per step per megapixel"
    seconds = STARTUP_SECONDS + per_image * len(jobs) if jobs else 0.0
    return Estimate(
        images=len(jobs),
        seconds_per_image=per_image,
        gpu_minutes=seconds / 60,
        cost_usd=seconds * dollars_per_hour / 3600,
        basis=f"{basis}, ${dollars_per_hour:.2f}/h",
    )
