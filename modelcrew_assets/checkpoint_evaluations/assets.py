"""checkpoint_evaluations: the fixed evaluation set rendered with every checkpoint on the GPU executor,
scored for likeness and memorization by the worker, and the best checkpoint chosen (or overridden)."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from pydantic import Field

from modelcrew_assets.checkpoint_evaluations.evaluation_set import (
    EVAL_PROMPTS,
    EVAL_SEEDS,
    EVAL_SIZE,
    column_labels,
    evaluation_jobs,
    sample_key,
)
from modelcrew_assets.checkpoint_evaluations.report import (
    IDENTITY_CHECK,
    MEMORIZATION_CHECK,
    ScoredCheckpoint,
    build_grid,
    check_results,
    scores_json,
    scores_table,
)
from modelcrew_assets.checkpoint_evaluations.selection import (
    CROSS_PROMPT_THRESHOLD,
    MEMORIZATION_THRESHOLD,
    StepScores,
    Thresholds,
    select_checkpoint,
)
from modelcrew_assets.handoffs import (
    CheckpointEvaluations,
    LoraCheckpoints,
    SwappedFaces,
    read_index,
    read_model_spec,
    write_index,
)
from modelcrew_assets.imaging import encode_jpeg, markdown_image
from modelcrew_assets.partitions import models_partitions
from modelcrew_assets.resources.gpu import GpuExecutorResource, WorkerFailedError
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.storage_keys import asset_prefix, face_prefix, is_image_name
from modelcrew_assets.worker.messages import CheckpointScored

ASSET = CheckpointEvaluations.ASSET


class CheckpointEvaluationConfig(dg.Config):
    checkpoint_step: int | None = Field(
        default=None,
        description="Use this checkpoint instead of the automatic choice (recorded as manual). When this "
        "training run was already evaluated, its scores are reused and nothing is rendered again",
    )
    identity_threshold: float | None = Field(
        default=None, description="Identity a checkpoint needs; default per embedder (dlib 0.37, SFace 0.363)"
    )
    identity_margin: float | None = Field(
        default=None, description="Identities this close to the best count as equal, and the earlier step wins"
    )
    memorization_threshold: float = Field(default=MEMORIZATION_THRESHOLD, description="Nearest-training-photo limit")
    cross_prompt_threshold: float = Field(default=CROSS_PROMPT_THRESHOLD, description="Same-picture-every-time limit")
    resolution: int = Field(default=EVAL_SIZE, ge=64, description="Side of the square evaluation images")
    max_runtime_minutes: float | None = Field(default=None, description="Overrides the executor's budget")


@dataclass(frozen=True)
class Evaluation:
    scored: tuple[ScoredCheckpoint, ...]
    embedder: str
    metadata: Mapping[str, Any] = field(default_factory=dict)  # cost, job ids, reuse


@dg.asset(
    # The stand-in and the identity scores read the training photos too.
    deps=[LoraCheckpoints.ASSET, SwappedFaces.ASSET],
    partitions_def=models_partitions,
    pool="gpu",
    group_name="training",
    kinds={"pytorch", "opencv"},
    check_specs=[
        dg.AssetCheckSpec(IDENTITY_CHECK, asset=ASSET, blocking=True),
        dg.AssetCheckSpec(MEMORIZATION_CHECK, asset=ASSET, blocking=True),
    ],
)
def checkpoint_evaluations(
    context: dg.AssetExecutionContext,
    config: CheckpointEvaluationConfig,
    storage: StorageResource,
    gpu: GpuExecutorResource,
) -> dg.MaterializeResult:
    """Every checkpoint's samples scored for likeness and memorization, and the best checkpoint chosen."""
    model = context.partition_key
    trained = read_index(storage, model, LoraCheckpoints)
    if not trained.checkpoints:
        raise dg.Failure(f"lora_checkpoints run {trained.run_id} for {model!r} has no checkpoints; train again")
    steps = [checkpoint.step for checkpoint in trained.checkpoints]
    if config.checkpoint_step is not None and config.checkpoint_step not in steps:
        # Before any GPU time is spent on an override that cannot be honoured.
        raise dg.Failure(
            f"checkpoint_evaluations for {model!r}: checkpoint_step {config.checkpoint_step} is not one of the "
            f"saved steps of lora_checkpoints run {trained.run_id} ({', '.join(map(str, steps))}); pick one of them"
        )
    run_id = context.run.run_id[:8]
    prefix = f"{asset_prefix(model, ASSET)}{run_id}/"
    evaluation = _reusable(storage, model, trained) if config.checkpoint_step is not None else None
    if evaluation is None:
        evaluation = _evaluate(context, config, storage, gpu, trained, prefix)
    else:
        context.log.info(f"checkpoint_step given: reusing scores of {evaluation.metadata['reused_scores_from']}")
    thresholds = Thresholds.for_embedder(
        evaluation.embedder,
        identity=config.identity_threshold,
        margin=config.identity_margin,
        memorization=config.memorization_threshold,
        cross_prompt=config.cross_prompt_threshold,
    )
    try:
        selection = select_checkpoint([s.scores for s in evaluation.scored], thresholds, config.checkpoint_step)
    except ValueError as error:
        raise dg.Failure(f"checkpoint_evaluations for {model!r}: {error}") from None
    chosen = next(s for s in evaluation.scored if s.scores.step == selection.step)
    (context.log.info if selection.verdict in ("chosen", "manual") else context.log.warning)(selection.reason)

    grid = build_grid(storage, evaluation.scored, column_labels(), selection.step)
    grid_put = storage.put_bytes(prefix + "grid.jpg", encode_jpeg(grid, quality=85), "image/jpeg")
    document = scores_json(model, run_id, trained.run_id, evaluation.embedder, thresholds, selection, evaluation.scored)
    scores_put = storage.put_bytes(prefix + "scores.json", document, "application/json")
    dry_run = gpu.simulated or trained.dry_run or bool(evaluation.metadata.get("dry_run"))  # the label
    write_index(
        storage,
        CheckpointEvaluations(
            model=model,
            dry_run=dry_run,
            run_id=run_id,
            scores=tuple(s.handoff(thresholds) for s in evaluation.scored),
            chosen=chosen.checkpoint,
            reason=selection.reason,
            manual=selection.manual,
            lora_run_id=trained.run_id,
            verdict=selection.verdict,
            action=selection.action,
            embedder=evaluation.embedder,
            grid_key=grid_put.key,
            scores_key=scores_put.key,
        ),
    )
    metadata = {
        "dagster/uri": dg.MetadataValue.path(storage.uri(prefix)),
        "dagster/row_count": len(evaluation.scored),
        "chosen_step": selection.step,
        "chosen_checkpoint_uri": dg.MetadataValue.path(storage.uri(chosen.checkpoint.key)),
        # A command, not a presigned URL: the event log keeps metadata for ever, and a presigned URL carries
        # a signature (and on STS a session token) that must not live there.
        "download": f"modelcrew download {model}  (writes {model}-{selection.step}.safetensors + trigger word)",
        "reason": selection.reason,
        "verdict": selection.verdict,
        "manual_choice": selection.manual,
        "automatic_step": selection.automatic_step,
        "scores": scores_table(evaluation.scored, thresholds, selection.step),
        "grid": dg.MetadataValue.md(markdown_image(grid, "checkpoints x prompt/seed", max_side=1600)),
        "grid_uri": dg.MetadataValue.path(grid_put.uri),
        "scores_uri": dg.MetadataValue.path(scores_put.uri),
        "embedder": evaluation.embedder,
        "identity_threshold": thresholds.identity,
        "memorization_threshold": thresholds.memorization,
        "lora_run_id": trained.run_id,
        "dry_run": dry_run,
        **evaluation.metadata,
    }
    if selection.action:
        metadata["recommended_action"] = selection.action
    return dg.MaterializeResult(
        metadata=metadata, check_results=check_results(chosen.scores, thresholds, evaluation.embedder, selection.manual)
    )


def _evaluate(
    context: dg.AssetExecutionContext,
    config: CheckpointEvaluationConfig,
    storage: StorageResource,
    gpu: GpuExecutorResource,
    trained: LoraCheckpoints,
    prefix: str,
) -> Evaluation:
    model = trained.model
    spec = read_model_spec(storage, model)
    faces = [item.key for item in storage.list(face_prefix(model)) if is_image_name(item.key)]
    if not faces:
        raise dg.Failure(f"no reference face image in {face_prefix(model)}; upload the model's face photo there")
    training = [image.key for image in read_index(storage, model, SwappedFaces).images]
    jobs = evaluation_jobs(spec, trained.checkpoints, prefix, size=config.resolution)
    extras = {
        "storage_url": storage.url,
        "jobs": [job.as_dict() for job in jobs],
        "references": {"face_keys": faces, "training_keys": training},
        "score": True,
        "base_model": spec.training.base_model,  # the base the LoRA was trained on
    }
    context.log.info(
        f"rendering {len(jobs)} samples ({len(trained.checkpoints)} checkpoints x {len(EVAL_PROMPTS)} prompts x "
        f"{len(EVAL_SEEDS)} seeds at {config.resolution}px) on {gpu.backend_name}"
    )
    try:
        run = gpu.run(
            context,
            worker_args=["generate"],
            extras=extras,
            storage=storage,
            max_runtime_minutes=config.max_runtime_minutes,
        )
    except WorkerFailedError as failure:
        raise dg.Failure(
            description=f"checkpoint_evaluations for {model!r}: the generate worker failed; {failure}",
            metadata=failure.run.cost_metadata(),
        ) from failure
    scores = {message.lora_key: message for message in run.of_type(CheckpointScored)}
    unscored = [c.step for c in trained.checkpoints if c.key not in scores]
    if unscored:
        raise dg.Failure(f"the generate worker returned no scores for steps {unscored}; see the run's logs")
    scored = []
    for checkpoint in trained.checkpoints:
        message = scores[checkpoint.key]
        scored.append(
            ScoredCheckpoint(
                checkpoint=checkpoint,
                scores=StepScores(
                    step=checkpoint.step,
                    identity=message.identity,
                    face_detection_rate=message.face_detection_rate,
                    memorization=message.memorization,
                    cross_prompt_similarity=message.cross_prompt_similarity,
                ),
                memorization_max=message.memorization_max,
                sample_keys=tuple(job.output_key for job in jobs if job.lora_key == checkpoint.key),
                samples=message.samples,
            )
        )
    embedder = next(iter(scores.values())).embedder
    return Evaluation(
        tuple(sorted(scored, key=lambda s: s.scores.step)), embedder, {**run.cost_metadata(), "samples": len(jobs)}
    )


def _reusable(storage: StorageResource, model: str, trained: LoraCheckpoints) -> Evaluation | None:
    """The previous evaluation's scores, when it scored exactly this training run's checkpoints."""
    if not storage.exists(f"{asset_prefix(model, ASSET)}index.json"):
        return None
    previous = read_index(storage, model, CheckpointEvaluations)
    by_step = {checkpoint.step: checkpoint for checkpoint in trained.checkpoints}
    same_steps = sorted(by_step) == sorted(s.step for s in previous.scores)
    if previous.lora_run_id != trained.run_id or not same_steps or not previous.embedder:
        return None
    old_prefix = f"{asset_prefix(model, ASSET)}{previous.run_id}/"
    scored = tuple(
        ScoredCheckpoint(
            checkpoint=by_step[score.step],
            scores=StepScores(
                score.step, score.identity, score.face_detection_rate, score.memorization, score.cross_prompt_similarity
            ),
            memorization_max=score.memorization_max,
            sample_keys=tuple(
                sample_key(old_prefix, score.step, p, seed) for p in range(len(EVAL_PROMPTS)) for seed in EVAL_SEEDS
            ),
        )
        for score in sorted(previous.scores, key=lambda s: s.step)
    )
    return Evaluation(scored, previous.embedder, {"reused_scores_from": previous.run_id, "dry_run": previous.dry_run})
