"""lora_checkpoints: kohya SDXL LoRA training on the GPU executor, every checkpoint stored as written."""

import hashlib
import io
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict

import dagster as dg
from pydantic import Field

from modelcrew_assets.costs import gpu_estimate
from modelcrew_assets.handoffs import (
    Checkpoint,
    KohyaDataset,
    LoraCheckpoints,
    read_index,
    read_model_spec,
    write_index,
)
from modelcrew_assets.imaging import markdown_image
from modelcrew_assets.lora_checkpoints.checks import (
    EVERY_SAVE_STEP,
    VALID_SAFETENSORS,
    every_save_step_result,
    valid_safetensors_result,
)
from modelcrew_assets.lora_checkpoints.plot import loss_curve
from modelcrew_assets.lora_checkpoints.runtime import RuntimeEstimate, estimate_runtime
from modelcrew_assets.manifest import ModelSpec
from modelcrew_assets.partitions import models_partitions
from modelcrew_assets.resources.gpu import GpuExecutorResource, WorkerFailedError, WorkerRun
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.storage_keys import asset_prefix
from modelcrew_assets.worker.kohya import Recipe
from modelcrew_assets.worker.messages import CheckpointStored, SampleStored, TrainResult
from modelcrew_assets.worker.safetensors_header import parse_header

ASSET = LoraCheckpoints.ASSET
SAMPLE_PROMPTS = 2
STEP_FILE = re.compile(r"-step(\d{8})\.safetensors$")


class LoraTrainingConfig(dg.Config):
    resume: bool = Field(
        default=False,
        description="Save kohya's state at every save step and resume from the newest one a previous "
        "attempt of the same run left in storage",
    )
    max_runtime_minutes: float | None = Field(
        default=None,
        description="Overrides the time budget; by default it is estimated from the step count and GPU type "
        "(unless the executor's max_runtime_minutes is set explicitly)",
    )


def recipe_for(spec: ModelSpec, save_state: bool) -> Recipe:
    training = spec.training
    return Recipe(
        max_train_steps=training.max_train_steps,
        save_every_n_steps=training.save_every_n_steps,
        network_dim=training.network_dim,
        network_alpha=training.network_alpha,
        learning_rate=training.learning_rate,
        resolution=training.resolution,
        train_batch_size=training.train_batch_size,
        optimizer_type=training.optimizer,
        mixed_precision=training.mixed_precision,
        seed=training.seed,
        save_state=save_state,
        base_model=training.base_model,
        unet_lr=training.unet_lr,
        text_encoder_lr=training.text_encoder_lr,
        network_train_unet_only=training.network_train_unet_only,
        noise_offset=training.noise_offset,
        min_snr_gamma=training.min_snr_gamma,
        caption_dropout_rate=training.caption_dropout_rate,
        shuffle_caption=training.shuffle_caption,
        keep_tokens=training.keep_tokens,
    )


def run_id_for(dataset: KohyaDataset, recipe: Recipe, prompts: Sequence[str]) -> str:
    """Same dataset + recipe -> same run folder, so a retried attempt can resume into it."""
    digest = hashlib.sha256(json.dumps([asdict(recipe), list(prompts)], sort_keys=True).encode()).hexdigest()
    return f"{dataset.version[:12]}-{digest[:8]}"


def _checkpoints(storage: StorageResource, run: WorkerRun) -> list[Checkpoint]:
    by_step = {message.step: message for message in run.of_type(CheckpointStored)}
    return [
        Checkpoint(
            step=step,
            key=message.key,
            sha256=message.sha256,
            size=message.size,
            uri=storage.uri(message.key),
            metadata=message.metadata,
        )
        for step, message in sorted(by_step.items())
    ]


def _stored_checkpoint(storage: StorageResource, step: int, key: str) -> Checkpoint:
    data = storage.get_bytes(key)
    metadata = parse_header(data).metadata
    return Checkpoint(
        step=step, key=key, sha256=storage.content_sha256(key), size=len(data), uri=storage.uri(key),
        metadata={k: v for k, v in metadata.items() if k.startswith("ss_")},
    )  # fmt: skip


def _earlier_checkpoints(storage: StorageResource, prefix: str, name: str, result: TrainResult) -> list[Checkpoint]:
    """Checkpoints the training this run resumed stored before its state: the state's own list when it
    has one, else every `<name>-step*` file up to the state's step."""
    if result.resumed_checkpoints is not None:
        return [_stored_checkpoint(storage, step, key) for step, key in result.resumed_checkpoints]
    up_to_step = result.resumed_from_step
    found = []
    for stored in storage.list(f"{prefix}{name}-step"):
        match = STEP_FILE.search(stored.key)
        if match and int(match.group(1)) <= up_to_step:
            found.append(_stored_checkpoint(storage, int(match.group(1)), stored.key))
    return found


def runtime_budget(
    config: LoraTrainingConfig, gpu: GpuExecutorResource, estimate: RuntimeEstimate
) -> tuple[float | None, str]:
    """(minutes to pass the executor, where they come from): the config's override, else the executor's
    own setting when a deployment set one, else the estimate."""
    if config.max_runtime_minutes is not None:
        return config.max_runtime_minutes, "config"
    if "max_runtime_minutes" in gpu.model_fields_set:
        return None, "executor"
    return estimate.budget_minutes, "estimate"


def _loss_table(checkpoints: Sequence[Checkpoint], loss: Mapping[int, float]) -> str:
    rows = ["| step | avr_loss | size (MB) | sha256 |", "| ---: | ---: | ---: | --- |"]
    for checkpoint in checkpoints:
        value = loss.get(checkpoint.step)
        shown = f"{value:.4f}" if value is not None else "-"
        rows.append(f"| {checkpoint.step} | {shown} | {checkpoint.size / 1e6:.2f} | `{checkpoint.sha256[:12]}` |")
    return "\n".join(rows)


@dg.asset(
    deps=[KohyaDataset.ASSET],
    partitions_def=models_partitions,
    pool="gpu",
    group_name="training",
    kinds={"pytorch", "runpod"},
    check_specs=[
        dg.AssetCheckSpec(VALID_SAFETENSORS, asset=ASSET),
        dg.AssetCheckSpec(EVERY_SAVE_STEP, asset=ASSET),
    ],
)
def lora_checkpoints(
    context: dg.AssetExecutionContext, config: LoraTrainingConfig, storage: StorageResource, gpu: GpuExecutorResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """An SDXL likeness LoRA trained with kohya on a rented GPU: one checkpoint per save step."""
    model = context.partition_key
    dataset = read_index(storage, model, KohyaDataset)
    spec = read_model_spec(storage, model)
    recipe = recipe_for(spec, save_state=config.resume)
    prompts = [p.format(trigger=spec.trigger, class_word=spec.model.class_word) for p in spec.generation.prompts]
    prompts = prompts[:SAMPLE_PROMPTS]
    run_id = run_id_for(dataset, recipe, prompts)
    prefix = f"{asset_prefix(model, ASSET)}{run_id}/"
    extras = {
        "storage_url": storage.url,
        "dataset_zip_key": dataset.zip_key,
        "image_folder": dataset.image_folder,
        "output_prefix": prefix,
        "output_name": model,
        "recipe": asdict(recipe),
        "sample_prompts": prompts,
        "negative_prompt": spec.generation.negative_prompt,
        "resume": config.resume,
        "attempt": f"{context.run.run_id[:8]}-{context.retry_number}",
    }
    estimate = estimate_runtime(recipe, dataset.image_count, len(prompts), getattr(gpu, "gpu_types", ()))
    budget, budget_source = runtime_budget(config, gpu, estimate)
    shown_budget = budget if budget is not None else gpu.max_runtime_minutes
    cost = gpu_estimate(estimate.expected_minutes, gpu.dollars_per_hour, f"expected training time on {estimate.gpu}")
    context.log.info(
        f"training {model} (run {run_id}) on {gpu.backend_name}: {recipe}; time budget {shown_budget:g} min "
        f"({budget_source}; estimate: {estimate.describe()}); cost {cost.describe()}"
    )
    try:
        run = gpu.run(context, worker_args=["train"], extras=extras, storage=storage, max_runtime_minutes=budget)
    except WorkerFailedError as failure:
        kept = _checkpoints(storage, failure.run)
        record = {
            "run_id": run_id,
            "dagster_run_id": context.run.run_id,
            "error": str(failure),
            "checkpoints": [c.model_dump() for c in kept],
            **failure.run.cost_metadata(),
        }
        storage.put_bytes(f"{prefix}attempts/{context.run.run_id}.json", json.dumps(record, indent=2).encode())
        raise dg.Failure(
            description=f"lora_checkpoints for {model!r} failed; kept checkpoints at steps "
            f"{[c.step for c in kept] or 'none'} in {storage.uri(prefix)}. {failure}",
            metadata={
                "kept_checkpoint_steps": [c.step for c in kept],
                "kept_checkpoints": [c.key for c in kept],
                **failure.run.cost_metadata(),
            },
        ) from failure

    result = run.result_as(TrainResult) or TrainResult(ok=True)
    resumed_from = result.resumed_from_step
    earlier = {c.step: c for c in _earlier_checkpoints(storage, prefix, model, result)}
    checkpoints = list({**earlier, **{c.step: c for c in _checkpoints(storage, run)}}.values())
    checkpoints.sort(key=lambda c: c.step)
    loss = dict(result.loss)
    plot = loss_curve(sorted(loss.items()), [c.step for c in checkpoints])
    buffer = io.BytesIO()
    plot.save(buffer, format="PNG")
    plot_key = storage.put_bytes(prefix + "loss.png", buffer.getvalue(), "image/png")
    index = LoraCheckpoints(
        model=model,
        dry_run=gpu.simulated,
        run_id=run_id,
        dataset_version=dataset.version,
        base_model=result.base_model,
        checkpoints=tuple(checkpoints),
        loss=tuple(sorted(loss.items())),
    )
    write_index(storage, index)
    samples = run.of_type(SampleStored)
    yield dg.MaterializeResult(
        metadata={
            "dagster/uri": dg.MetadataValue.path(storage.uri(prefix)),
            "dagster/row_count": len(checkpoints),
            "checkpoint_steps": [c.step for c in checkpoints],
            "final_avr_loss": loss[max(loss)] if loss else None,
            "loss_curve": dg.MetadataValue.md(
                markdown_image(plot, "loss curve") + "\n\n" + _loss_table(checkpoints, loss)
            ),
            "loss_curve_uri": dg.MetadataValue.path(plot_key.uri),
            "samples": len(samples),
            "training_args": dg.MetadataValue.json({"recipe": asdict(recipe), "command": list(result.trainer_command)}),
            "trainer_seconds": result.trainer_seconds,
            "resumed_from_step": resumed_from,
            "finished_before_start": result.finished_before_start,
            "kohya_layout": dg.MetadataValue.json(result.kohya_layout),
            "runtime_budget_minutes": shown_budget,
            "runtime_budget_source": budget_source,
            "runtime_estimate": estimate.describe(),
            **cost.metadata(),
            "dry_run": gpu.simulated,
            **run.cost_metadata(),
        }
    )
    yield valid_safetensors_result(storage, checkpoints, recipe)
    yield every_save_step_result(checkpoints, recipe)
