"""post_metrics (engagement per post, read daily) and prompt_pack_performance (Bayesian estimates per arm)."""

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import dagster as dg
from pydantic import Field

from modelcrew_assets.handoffs import GeneratedBatch, index_key, read_index, write_index
from modelcrew_assets.partitions import models_partitions
from modelcrew_assets.post_metrics.index import PostMetrics, PromptPackPerformance
from modelcrew_assets.post_metrics.performance import Prompts, arm_outcomes, performance
from modelcrew_assets.post_metrics.provider import MetricsServiceResource, PostRef
from modelcrew_assets.post_metrics.report import arms_chart, arms_table, daily_chart, summary_table
from modelcrew_assets.post_metrics.series import (
    MetricRow,
    best_settled,
    latest,
    read_history,
    reads_prefix,
    row_for,
    status_of,
    write_read,
)
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.scheduled_posts.index import ScheduledPosts
from modelcrew_assets.scheduled_posts.ledger import PostEntry, read_ledger

NO_ZEROS_BEFORE_NUMBERS = "posts_without_numbers_are_not_counted_as_zero"
NO_ZEROS_MEANING = "Every pending, late or unavailable reading in the stored series has empty counts, never 0."


class PostMetricsConfig(dg.Config):
    settle_hours: float = Field(default=72, gt=0, description="A post younger than this is still settling")
    track_days: int = Field(default=30, ge=1, description="Posts older than this are no longer read")


@dg.asset(
    name=PostMetrics.ASSET,
    deps=[ScheduledPosts.ASSET],
    partitions_def=models_partitions,
    group_name="analytics",
    kinds={"buffer", "csv"},
    check_specs=[dg.AssetCheckSpec(NO_ZEROS_BEFORE_NUMBERS, asset=PostMetrics.ASSET, description=NO_ZEROS_MEANING)],
)
def post_metrics(
    context: dg.AssetExecutionContext,
    config: PostMetricsConfig,
    storage: StorageResource,
    metrics: MetricsServiceResource,
) -> dg.MaterializeResult:
    """Engagement of every post that went out, as a time series (one row per post per read)."""
    model = context.partition_key
    now = datetime.now(UTC)
    entries = {e.post_id: e for e in read_ledger(storage, model).values() if _gone_out(e, now, config.track_days)}
    prompts = Prompts(storage, model)
    refs = [_ref(entry, prompts) for entry in entries.values()]
    readings = asyncio.run(_read(metrics, model, refs)) if refs else []
    settle = timedelta(hours=config.settle_hours)
    rows = []
    for reading in readings:
        entry = entries[reading.post_id]
        status = status_of(reading, entry.due_at, now, settle)
        rows.append(row_for(reading, entry.export_id, entry.platform, entry.due_at, now, status, metrics.simulated))
    key = write_read(storage, model, rows, now)
    history = read_history(storage, model)
    newest = list(latest(history).values())
    settled = best_settled(newest)
    write_index(
        storage,
        PostMetrics(
            model=model,
            dry_run=metrics.simulated,
            reads_prefix=reads_prefix(model),
            latest_read_key=key,
            posts_read=len(entries),
            settled=len(settled),
        ),
    )
    statuses = Counter(row.status for row in rows)
    for row in rows:
        if row.status == "unavailable":
            context.log.warning(f"{row.source} metrics unavailable: {row.note}")
            break
    metadata: dict[str, object] = {
        "dagster/uri": dg.MetadataValue.path(storage.uri(key)),
        "dagster/row_count": len(rows),
        "posts_read": len(entries),
        **{f"readings_{status}": count for status, count in sorted(statuses.items())},
        "posts_settled_in_total": len(settled),
        "summary": dg.MetadataValue.md(summary_table(newest, now)),
        "engagement_by_day": dg.MetadataValue.md(daily_chart(newest, now)),
    }
    if metrics.simulated:
        metadata["dry_run"] = True
    return dg.MaterializeResult(metadata=metadata, check_results=[_no_zeros_check(history)])


@dg.asset(
    name=PromptPackPerformance.ASSET,
    deps=[PostMetrics.ASSET, ScheduledPosts.ASSET, GeneratedBatch.ASSET],
    partitions_def=models_partitions,
    group_name="analytics",
    kinds={"python"},
)
def prompt_pack_performance(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """Engagement per reach of each prompt pack and reel motion: Beta posterior, 95% interval, A/B verdicts."""
    model = context.partition_key
    measured = read_index(storage, model, PostMetrics)
    settled = best_settled(read_history(storage, model))
    entries = list(read_ledger(storage, model).values())
    outcomes, labels = arm_outcomes(entries, settled, Prompts(storage, model))
    result = performance(model, outcomes, labels, measured.dry_run)
    write_index(storage, result)
    arms = sorted(result.arms, key=lambda a: (a.kind, -a.mean))
    metadata: dict[str, object] = {
        "dagster/uri": dg.MetadataValue.path(storage.uri(index_key(model, PromptPackPerformance.ASSET))),
        "dagster/row_count": len(arms),
        "settled_posts": result.settled_posts,
        "arms": dg.MetadataValue.md(arms_table(arms)),
        "chart": dg.MetadataValue.md(arms_chart(arms)),
        "verdicts": dg.MetadataValue.md("\n".join(f"- {v}" for v in result.verdicts) or "no arms to compare yet"),
    }
    if result.dry_run:
        metadata["dry_run"] = True
    return dg.MaterializeResult(metadata=metadata)


def _gone_out(entry: PostEntry, now: datetime, track_days: int) -> bool:
    return bool(
        entry.state == "created"
        and entry.post_id
        and entry.due_at
        and now - timedelta(days=track_days) <= entry.due_at <= now
    )


def _ref(entry: PostEntry, prompts: Prompts) -> PostRef:
    reel = prompts.reel(entry.source_key)
    prompt = prompts.prompt(entry.batch_id, reel[0] if reel else entry.source_key)
    service = entry.platform.split("_", 1)[0]
    return PostRef(entry.post_id or "", entry.platform, service, entry.channel_id, entry.due_at, entry.text, prompt)


async def _read(metrics: MetricsServiceResource, model: str, refs: list[PostRef]):
    async with metrics.session(model) as session:
        return await session.read(refs)


def _no_zeros_check(rows: list[MetricRow]) -> dg.AssetCheckResult:
    counted = ("reach", "impressions", "views", "reactions", "comments", "shares", "saves")
    wrong = [
        f"{r.post_id} ({r.source}, {r.read_at:%Y-%m-%d})"
        for r in rows
        if r.status in ("pending", "late", "unavailable") and any(getattr(r, c) is not None for c in counted)
    ]
    return dg.AssetCheckResult(
        check_name=NO_ZEROS_BEFORE_NUMBERS,
        passed=not wrong,
        metadata={"readings": len(rows), "with_numbers_while_pending": ", ".join(wrong[:20]) or "none"},
    )
