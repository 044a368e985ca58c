"""The `swapped_faces` asset: the model's face swapped onto each of its target photos."""

import asyncio

import dagster as dg
from pydantic import Field

from modelcrew_assets import asset_names
from modelcrew_assets.costs import CostEstimate, jobs_estimate
from modelcrew_assets.handoffs import SwappedFaces, read_model_spec, write_index
from modelcrew_assets.intake.upload_scan import ModelUploads, group_uploads
from modelcrew_assets.manifest import ModelSpec
from modelcrew_assets.partitions import models_partitions
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.storage_keys import upload_prefix
from modelcrew_assets.swapped_faces.curation import curate, measure_all
from modelcrew_assets.swapped_faces.flow import SwapRun, swap_all
from modelcrew_assets.swapped_faces.inputs import ASSET, SwapOptions, load_inputs
from modelcrew_assets.swapped_faces.providers import SwapServiceResource
from modelcrew_assets.swapped_faces.report import SwapReport, curation_metadata, describe_failure
from modelcrew_assets.swapped_faces.results import TargetOutcome


class SwapRunConfig(dg.Config):
    resubmit_ambiguous: bool = Field(
        default=False,
        description="Create a new job for targets whose earlier create request got no answer (it may have "
        "been billed). Set it after checking the provider's dashboard; off, such targets are only listed.",
    )


@dg.asset(
    name=ASSET,
    deps=[asset_names.MODEL_UPLOADS],
    partitions_def=models_partitions,
    group_name="training_data",
    kinds={"python", "s3"},
)
def swapped_faces(
    context: dg.AssetExecutionContext,
    config: SwapRunConfig,
    storage: StorageResource,
    face_swaps: SwapServiceResource,
) -> dg.MaterializeResult:
    """The model's face swapped onto each of its target photos, each judged usable for training or not."""
    model = context.partition_key
    spec, uploads = _read_uploads(storage, model)
    face_swaps.check_ready(storage)
    options = SwapOptions(faces=spec.swap.faces, enhance=spec.swap.enhance, provider=face_swaps.provider_name)
    inputs = load_inputs(storage, uploads, options)
    for key, why in inputs.unreadable:
        context.log.warning(f"skipping unreadable target {key}: {why}")
    run = SwapRun(model, inputs, options, face_swaps.max_concurrency, config.resubmit_ambiguous)
    cost = _cost_estimate(len(inputs.targets), options, face_swaps)
    context.log.info(f"swapping {len(inputs.targets)} targets with {face_swaps.provider_name}: cost {cost.describe()}")
    outcomes = asyncio.run(_swap(run, face_swaps, storage))
    report = SwapReport(model, outcomes, inputs.unreadable, face_swaps.simulated, face_swaps.price_per_job)
    for outcome in report.problems:
        context.log.warning(f"{outcome.target_key}: {outcome.status}: {outcome.reason}")
    metadata = report.metadata(storage)
    if not report.meets(spec.swap.min_success):
        raise dg.Failure(description=describe_failure(report, spec.swap.min_success), metadata=metadata)
    measures = measure_all(storage, report.images)
    curation = curate(report.outcomes, inputs.unreadable, measures, spec)
    for verdict in curation.excluded:
        context.log.info(f"excluded from the training set: {verdict.target_key}: {verdict.detail}")
    if curation.unmatched_forced:
        context.log.warning(f"force lists name no target photo: {', '.join(curation.unmatched_forced)}")
    metadata.update(curation_metadata(curation, measures))
    metadata.update(cost.metadata())
    index = SwappedFaces(model=model, dry_run=face_swaps.simulated, images=report.images, verdicts=curation.verdicts)
    write_index(storage, index)
    return dg.MaterializeResult(metadata=metadata)


def _read_uploads(storage: StorageResource, model: str) -> tuple[ModelSpec, ModelUploads]:
    uploads = group_uploads(storage.list(upload_prefix(model))).models.get(model)
    if uploads is None or uploads.missing:
        needs = ", ".join(uploads.missing) if uploads else f"anything under {upload_prefix(model)}"
        raise dg.Failure(f"swapped_faces for {model!r}: missing {needs}; upload it and run again")
    return read_model_spec(storage, model), uploads


async def _swap(run: SwapRun, face_swaps: SwapServiceResource, storage: StorageResource) -> list[TargetOutcome]:
    async with face_swaps.swaps(storage, run.inputs.face) as provider:
        return await swap_all(run, provider, storage)


def _cost_estimate(targets: int, options: SwapOptions, face_swaps: SwapServiceResource) -> CostEstimate:
    """The most this run can spend: a job per target (two with enhance); cached and faceless ones cost nothing."""
    per_target = 2 if options.enhance else 1
    if face_swaps.simulated:
        return jobs_estimate(0, 0.0, "simulated provider: free")
    return jobs_estimate(targets * per_target, face_swaps.price_per_job, "at most, before cached results count")
