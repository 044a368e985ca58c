"""generated_batches: a batch of images from the chosen checkpoint, resumable and reproducible."""

from collections.abc import Iterator

import dagster as dg
from pydantic import Field, ValidationError

from modelcrew_assets.generated_batches.allocation import Allocation, allocation_table, batch_allocation
from modelcrew_assets.generated_batches.checks import (
    BATCH_IS_COMPLETE,
    EVERY_IMAGE_HAS_A_RECORD,
    complete_result,
    contact_sheet_metadata,
    provenance_result,
)
from modelcrew_assets.generated_batches.progress import (
    check_resumable,
    estimate,
    read_progress,
)
from modelcrew_assets.generated_batches.prompt_packs import (
    ASSET,
    batch_json_key,
    batch_prefix,
    parse_size,
    plan_batch,
    rendered_prompts,
    validate_batch_id,
)
from modelcrew_assets.handoffs import (
    Checkpoint,
    CheckpointEvaluations,
    GeneratedBatch,
    LoraCheckpoints,
    MissingUpstreamError,
    read_index,
    read_model_spec,
    write_index,
)
from modelcrew_assets.manifest import ModelSpec
from modelcrew_assets.partitions import models_partitions
from modelcrew_assets.resources.gpu import GpuExecutorResource, WorkerFailedError, WorkerRun
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.worker.jobs import BatchJob
from modelcrew_assets.worker.messages import BatchImageStored, BatchResult

HARD_STOP_MARGIN_MINUTES = 15
BATCH_TAG = "modelcrew/batch_id"  # set by the nightly schedule; a run may set it by hand too
ROOT_RUN_TAG = "dagster/root_run_id"


class GeneratedBatchConfig(dg.Config):
    batch_id: str | None = Field(
        default=None,
        description=f"Which batch to render or finish. Default: the run's {BATCH_TAG} tag, else "
        "'run-<first 8 of the root run id>' so a re-execution of a failed run resumes the same batch",
    )
    checkpoint_step: int | None = Field(
        default=None, description="Use this lora_checkpoints step instead of checkpoint_evaluations' choice"
    )
    max_images: int | None = Field(default=None, ge=1, description="Images to render in this run at most")
    max_gpu_minutes: float | None = Field(
        default=None, gt=0, description="The worker starts no new image after this many minutes"
    )
    image_size: str | None = Field(default=None, description="'WxH' for every image, e.g. '64x64' for dry runs")


def batch_id_for(config: GeneratedBatchConfig, run: dg.DagsterRun) -> str:
    root_run_id = run.tags.get(ROOT_RUN_TAG) or run.run_id
    return validate_batch_id(config.batch_id or run.tags.get(BATCH_TAG) or f"run-{root_run_id[:8]}")


def chosen_checkpoint(storage: StorageResource, model: str, step: int | None) -> tuple[Checkpoint, bool]:
    """checkpoint_evaluations' choice, or the step a person asked for; (checkpoint, chosen by hand)."""
    if step is None:
        return read_index(storage, model, CheckpointEvaluations).chosen, False
    trained = read_index(storage, model, LoraCheckpoints)
    for checkpoint in trained.checkpoints:
        if checkpoint.step == step:
            return checkpoint, True
    steps = ", ".join(str(c.step) for c in trained.checkpoints)
    raise dg.Failure(
        f"generated_batches: checkpoint_step {step} is not in lora_checkpoints run {trained.run_id} for "
        f"{model!r}; choose one of {steps}"
    )


def _last_speed(storage: StorageResource, model: str) -> float | None:
    try:
        previous = read_index(storage, model, GeneratedBatch)
    except (MissingUpstreamError, ValidationError):  # no earlier batch: the default figure is used
        return None
    timed = [image.seconds for image in previous.images if image.seconds > 0 and not image.dry_run]
    return sum(timed) / len(timed) if timed else None


@dg.asset(
    # The chosen step is resolved against the training run it came from.
    deps=[CheckpointEvaluations.ASSET, LoraCheckpoints.ASSET],
    partitions_def=models_partitions,
    pool="gpu",
    group_name="generation",
    kinds={"pytorch", "runpod"},
    check_specs=[
        dg.AssetCheckSpec(EVERY_IMAGE_HAS_A_RECORD, asset=ASSET),
        dg.AssetCheckSpec(BATCH_IS_COMPLETE, asset=ASSET),
    ],
)
def generated_batches(
    context: dg.AssetExecutionContext, config: GeneratedBatchConfig, storage: StorageResource, gpu: GpuExecutorResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """A batch of images from the chosen checkpoint, each with its prompt, seed and settings recorded."""
    model = context.partition_key
    batch_id = batch_id_for(config, context.run)
    spec = read_model_spec(storage, model)
    checkpoint, manual = chosen_checkpoint(storage, model, config.checkpoint_step)
    progress = read_progress(storage, model, batch_id)
    allocation = _allocation(storage, spec, batch_id, started=bool(progress.done or progress.unrecorded))
    size = parse_size(config.image_size) if config.image_size else None
    jobs = plan_batch(spec, batch_id, size, allocation.prompt_order())
    check_resumable(batch_id, jobs, progress.done, checkpoint.sha256)
    missing = [job for job in jobs if job.index not in progress.done]
    max_images = config.max_images or spec.generation.max_images
    max_minutes = config.max_gpu_minutes or spec.generation.max_gpu_minutes
    to_render = missing[:max_images] if max_images else missing
    stopped_by = "max_images" if len(to_render) < len(missing) else None

    forecast = estimate(to_render, _last_speed(storage, model), gpu.dollars_per_hour)
    context.log.info(
        f"batch {batch_id} for {model}: {len(jobs)} planned, {len(progress.done)} already stored, "
        f"{len(to_render)} to render now with step {checkpoint.step} ({'manual' if manual else 'chosen'}); "
        f"estimate: {forecast.describe()}" + (f"; capped at {max_minutes:g} GPU minutes" if max_minutes else "")
    )
    run: WorkerRun | None = None
    failure: WorkerFailedError | None = None
    if to_render:
        try:
            run = _render(context, gpu, storage, spec, batch_id, to_render, checkpoint, max_minutes)
        except WorkerFailedError as error:
            failure, run = error, error.run
    result = run.result_as(BatchResult) if run else None
    stopped_by = (result and result.stopped_by) or stopped_by or ("worker failed" if failure else None)
    batch = _record_batch(storage, model, batch_id, jobs, gpu.simulated, stopped_by)
    if failure is not None:
        raise dg.Failure(
            description=f"generated_batches for {model!r}: the worker failed after {len(batch.images)} of "
            f"{len(jobs)} images of batch {batch_id!r} were stored (recorded in batch.json); materialize "
            f"again with batch_id {batch_id!r} to render only the missing ones. {failure}",
            metadata={"images": len(batch.images), "batch_id": batch_id, **_cost(run)},
        ) from failure
    write_index(storage, batch)
    if not batch.complete:
        context.log.warning(
            f"batch {batch_id} is partial: {len(batch.images)} of {len(jobs)} images (stopped by {stopped_by}); "
            f"materialize again with batch_id {batch_id!r} to finish it"
        )
    rendered = len(run.of_type(BatchImageStored)) if run else 0
    seconds = [image.seconds for image in batch.images if image.seconds > 0]
    yield dg.MaterializeResult(
        metadata={
            "dagster/uri": dg.MetadataValue.path(storage.uri(batch_json_key(model, batch_id))),
            "dagster/row_count": len(batch.images),
            "batch_id": batch_id,
            "planned": len(jobs),
            "rendered_this_run": rendered,
            "already_stored": len(progress.done),
            "complete": batch.complete,
            "stopped_by": stopped_by or "none",
            "seconds_per_image": round(sum(seconds) / len(seconds), 3) if seconds else None,
            **forecast.cost().metadata(),
            "checkpoint_step": checkpoint.step,
            "checkpoint_key": checkpoint.key,
            "checkpoint_choice": "manual" if manual else CheckpointEvaluations.ASSET,
            **contact_sheet_metadata(storage, batch),
            "allocation_method": allocation.method,
            "allocation_reason": allocation.reason,
            "allocation": dg.MetadataValue.md(allocation_table(allocation, rendered_prompts(spec))),
            "dry_run": batch.dry_run,
            **_cost(run),
        }
    )
    yield provenance_result(storage, batch)
    yield complete_result(batch)


def _allocation(storage: StorageResource, spec: ModelSpec, batch_id: str, started: bool) -> Allocation:
    generation = spec.generation
    prompts = rendered_prompts(spec)
    cap = None if generation.seeds == "auto" else len(generation.aspects) * len(generation.seeds)
    settings = (generation.allocation, generation.exploration_floor, cap)
    prefix = batch_prefix(spec.name, batch_id)
    return batch_allocation(storage, spec.name, batch_id, prefix, prompts, generation.images, settings, started)


def _render(
    context: dg.AssetExecutionContext,
    gpu: GpuExecutorResource,
    storage: StorageResource,
    spec: ModelSpec,
    batch_id: str,
    jobs: list[BatchJob],
    checkpoint: Checkpoint,
    max_minutes: float | None,
) -> WorkerRun:
    extras = {
        "storage_url": storage.url,
        "output_prefix": batch_prefix(spec.name, batch_id),
        "base_model": spec.training.base_model,  # the base the LoRA was trained on
        "checkpoint": {"key": checkpoint.key, "sha256": checkpoint.sha256, "step": checkpoint.step},
        "jobs": [job.as_dict() for job in jobs],
        "max_gpu_minutes": max_minutes,
    }
    # The worker stops itself at the cap; the executor's hard budget leaves room for booting the machine,
    # loading the pipeline and the image in flight, so only a hung worker is killed.
    budget = max_minutes + HARD_STOP_MARGIN_MINUTES if max_minutes else None
    return gpu.run(context, worker_args=["batch"], extras=extras, storage=storage, max_runtime_minutes=budget)


def _record_batch(
    storage: StorageResource,
    model: str,
    batch_id: str,
    jobs: list[BatchJob] | tuple[BatchJob, ...],
    simulated: bool,
    stopped_by: str | None,
) -> GeneratedBatch:
    """batch.json from what storage holds now: the truth, whatever the worker said. Written after a failed
    run too; the stage index (what the next stage reads) only after a successful one. Labelled dry_run when
    the executor is simulated or any image says so."""
    done = read_progress(storage, model, batch_id).done
    images = tuple(done[job.index] for job in jobs if job.index in done)
    complete = len(images) == len(jobs)
    batch = GeneratedBatch(
        model=model,
        dry_run=simulated or any(image.dry_run for image in images),
        batch_id=batch_id,
        images=images,
        planned=len(jobs),
        complete=complete,
        stopped_by=None if complete else stopped_by,
    )
    storage.put_bytes(batch_json_key(model, batch_id), batch.model_dump_json(indent=2).encode(), "application/json")
    return batch


def _cost(run: WorkerRun | None) -> dict:
    if run is None:
        return {"cost_usd": 0.0, "billable_seconds": 0.0, "gpu_job_id": "none (nothing to render)"}
    return run.cost_metadata()
