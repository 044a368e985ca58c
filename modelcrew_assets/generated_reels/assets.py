"""The generated_reels asset: short 9:16 videos from the batch's best stills, through an image-to-video API."""

import asyncio
from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from modelcrew_assets.generated_reels.budget import BudgetExceededError, Estimate, check_budget, estimate
from modelcrew_assets.generated_reels.checks import CHECK_SPECS, check_reels
from modelcrew_assets.generated_reels.finishing import finish_settings
from modelcrew_assets.generated_reels.flow import needs_new_job, run_reels
from modelcrew_assets.generated_reels.index import GeneratedReels
from modelcrew_assets.generated_reels.ledger import ReelLedger, ReelRecord, now
from modelcrew_assets.generated_reels.providers import VideoServiceResource
from modelcrew_assets.generated_reels.report import reels_table
from modelcrew_assets.generated_reels.stills import PlannedReel, identity_scores, plan_reels, prompt_still
from modelcrew_assets.handoffs import (
    GeneratedBatch,
    PlatformExports,
    index_key,
    read_index,
    read_model_spec,
    write_index,
)
from modelcrew_assets.imaging import decode_image
from modelcrew_assets.manifest import ModelSpec
from modelcrew_assets.partitions import models_partitions
from modelcrew_assets.resources.c2pa_signing import C2paSigningResource
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.storage_keys import asset_prefix, manifest_key

ASSET = GeneratedReels.ASSET


class ReelsRunConfig(dg.Config):
    resubmit_ambiguous: bool = Field(
        default=False,
        description="Create a new job for reels whose earlier create request got no answer (it may have been "
        "billed). Set it after checking the provider's dashboard; off, such reels are only listed.",
    )


@dg.asset(
    name=ASSET,
    deps=[GeneratedBatch.ASSET, PlatformExports.ASSET],
    partitions_def=models_partitions,
    group_name="exports",
    kinds={"runway", "ffmpeg"},
    check_specs=[dg.AssetCheckSpec(name, asset=ASSET, description=meaning) for name, meaning in CHECK_SPECS],
)
def generated_reels(
    context: dg.AssetExecutionContext,
    config: ReelsRunConfig,
    storage: StorageResource,
    video: VideoServiceResource,
    c2pa: C2paSigningResource,
) -> dg.MaterializeResult:
    """Short vertical videos (Reels/TikTok) from the batch's best stills: watermarked, labelled as AI-made."""
    model = context.partition_key
    spec = read_model_spec(storage, model)
    batch = read_index(storage, model, GeneratedBatch)
    exports = read_index(storage, model, PlatformExports)
    video.check_ready(storage)
    settings = finish_settings(storage, spec, c2pa.signing())
    ledger = ReelLedger(storage, model)
    records = ledger.all()
    provider, provider_model = video.provider_name, video.model_id(spec.reels.provider_model)
    mine = [r for r in records if r.provider == provider and r.provider_model == provider_model]
    existing = [r for r in mine if r.batch_id == batch.batch_id and r.outcome != "refused"]
    scores = identity_scores(storage, spec, batch) if spec.reels.top_n and batch.images else {}
    planned = plan_reels(
        spec, batch, exports, scores, {r.still_key for r in mine}, len(existing), provider, provider_model
    )
    todo = [*existing, *(_new_record(storage, spec, batch, reel, video, provider_model) for reel in planned)]
    plan = estimate(
        sum(needs_new_job(r, config.resubmit_ambiguous) for r in todo),
        spec.reels.duration,
        video.price_per_second_usd,
        records,
        datetime.now(UTC),
    )
    try:
        check_budget(plan, spec.reels, manifest_key(model))
    except BudgetExceededError as error:
        raise dg.Failure(str(error), metadata=_budget_metadata(plan, spec)) from None
    context.log.info(f"{ASSET}: {plan.jobs} new job(s), estimated USD {plan.cost_usd:.2f}")
    outcomes = asyncio.run(run_reels(storage, video, spec, todo, settings, context.log, config.resubmit_ambiguous))
    index = GeneratedReels(
        model=model,
        batch_id=batch.batch_id,
        reels=tuple(o.reel for o in outcomes if o.reel is not None),
        needs_attention=tuple(o.record.key for o in outcomes if o.record.outcome == "needs_attention"),
        dry_run=video.simulated or batch.dry_run,
    )
    write_index(storage, index)
    problems = [f"reel {o.record.key}: {o.problem}" for o in outcomes if o.problem]
    if problems:
        raise dg.Failure(
            f"{ASSET}: {len(problems)} reel(s) did not finish; their jobs stay in the ledger and a rerun polls "
            "them: " + "; ".join(problems[:5])
        )
    metadata: dict[str, object] = {
        "dagster/uri": dg.MetadataValue.path(storage.uri(index_key(model, ASSET))),
        "dagster/row_count": len(index.reels),
        "batch_id": batch.batch_id,
        "provider": provider,
        "provider_model": provider_model,
        "jobs_created": sum(o.created for o in outcomes),
        "reels": dg.MetadataValue.md(reels_table(storage, index.reels)),
        **_budget_metadata(plan, spec),
    }
    refused = [
        f"- {o.record.still_key}: {o.record.reason}" for o in outcomes if o.record.outcome in ("refused", "failed")
    ]
    if refused:
        metadata["not_made"] = dg.MetadataValue.md("\n".join(refused[:20]))
    if index.needs_attention:
        metadata["needs_attention"] = ", ".join(index.needs_attention)
    if index.dry_run:
        metadata["dry_run"] = True
    return dg.MaterializeResult(metadata=metadata, check_results=check_reels(storage, index))


def _new_record(
    storage: StorageResource, spec: ModelSpec, batch: GeneratedBatch, reel: PlannedReel,
    video: VideoServiceResource, provider_model: str,
) -> ReelRecord:  # fmt: skip
    """A reel not yet in the ledger (it is written there once its job exists); its 9:16 still is stored now."""
    still_key = f"{asset_prefix(spec.name, ASSET)}stills/{reel.still.sha256[:20]}.jpg"
    if not storage.exists(still_key):
        image = decode_image(storage.get_bytes(reel.still.key), reel.still.key)
        storage.put_bytes(still_key, prompt_still(image), "image/jpeg")
    return ReelRecord(
        key=reel.key,
        model=spec.name,
        batch_id=batch.batch_id,
        still_key=reel.still.key,
        still_sha256=reel.still.sha256,
        prompt_still_key=still_key,
        identity=reel.identity,
        still_prompt=reel.still.prompt,
        motion=reel.motion,
        prompt=reel.prompt,
        seed=reel.seed,
        provider=video.provider_name,
        provider_model=provider_model,
        duration=spec.reels.duration,
        dry_run=video.simulated,
        updated_at=now(),
    )


def _budget_metadata(plan: Estimate, spec: ModelSpec) -> dict[str, object]:
    return {
        "estimated_cost_usd": plan.cost_usd,
        "spent_today_usd": plan.spent_today_usd,
        "spent_this_month_usd": plan.spent_this_month_usd,
        "daily_budget_usd": spec.reels.daily_budget_usd,
        "monthly_budget_usd": spec.reels.monthly_budget_usd,
    }
