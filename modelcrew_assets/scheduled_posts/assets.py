"""The scheduled_posts asset: approved exports and reels become Buffer drafts / scheduled / queued posts."""

import asyncio
from collections import Counter
from datetime import UTC, datetime

import dagster as dg

from modelcrew_assets.generated_reels.index import GeneratedReels
from modelcrew_assets.handoffs import (
    GeneratedBatch,
    PlatformExports,
    index_key,
    read_index,
    read_model_spec,
    write_index,
)
from modelcrew_assets.manifest import ModelSpec
from modelcrew_assets.partitions import models_partitions
from modelcrew_assets.platform_exports.post_text import suggested_caption
from modelcrew_assets.resources.captioner import CaptionServiceResource
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.scheduled_posts.backlog import candidates, merged_backlog, read_withdrawn
from modelcrew_assets.scheduled_posts.checks import (
    NEVER_TWICE,
    NEVER_TWICE_MEANING,
    ONE_PER_SLOT,
    ONE_PER_SLOT_MEANING,
    WITHIN_DAILY_MAX,
    WITHIN_DAILY_MAX_MEANING,
    check_posts,
)
from modelcrew_assets.scheduled_posts.flow import run_posting
from modelcrew_assets.scheduled_posts.ics import calendar_ics
from modelcrew_assets.scheduled_posts.index import ScheduledPosts
from modelcrew_assets.scheduled_posts.ledger import PostEntry, read_ledger
from modelcrew_assets.scheduled_posts.posting import PostingServiceResource
from modelcrew_assets.scheduled_posts.reels import read_reels
from modelcrew_assets.scheduled_posts.report import upcoming, upcoming_table
from modelcrew_assets.scheduled_posts.text_csv import TextRow, edited_captions, texts_csv, written_key
from modelcrew_assets.scheduled_posts.written_captions import written_captions
from modelcrew_assets.storage_keys import asset_prefix

ASSET = ScheduledPosts.ASSET


@dg.asset(
    name=ASSET,
    # The backlog orders exports by their batch's age, read from the batch's index; reels are posted too.
    deps=[PlatformExports.ASSET, GeneratedBatch.ASSET, GeneratedReels.ASSET],
    partitions_def=models_partitions,
    group_name="posting",
    kinds={"buffer", "ics"},
    check_specs=[
        dg.AssetCheckSpec(ONE_PER_SLOT, asset=ASSET, description=ONE_PER_SLOT_MEANING),
        dg.AssetCheckSpec(WITHIN_DAILY_MAX, asset=ASSET, description=WITHIN_DAILY_MAX_MEANING),
        dg.AssetCheckSpec(NEVER_TWICE, asset=ASSET, description=NEVER_TWICE_MEANING),
    ],
)
def scheduled_posts(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    posting: PostingServiceResource,
    captioner: CaptionServiceResource,
) -> dg.MaterializeResult:
    """The model's exports and reels on its Buffer calendar: drafts, scheduled or queued posts, never twice."""
    model = context.partition_key
    spec = read_model_spec(storage, model)
    exports = read_index(storage, model, PlatformExports)
    previous = _previous_index(storage, model)
    index = merged_backlog(storage, previous, exports, read_reels(storage, model), spec.reels.platforms)
    config = spec.posting
    now = datetime.now(UTC)
    if not config.channels:
        context.log.warning(f"{ASSET}: uploads/{model}/model.toml has no [posting].channels; nothing is posted")
    sent = read_ledger(storage, model)
    waiting = [i for i in index.backlog if i.platform in config.channels and (i.export_id, i.platform) not in sent]
    written = asyncio.run(written_captions(storage, captioner, spec, waiting, context.log))
    captions = {(i.export_id, i.platform): written[i.export_id] for i in index.backlog if i.export_id in written}
    index, report = asyncio.run(
        run_posting(
            storage,
            posting,
            spec,
            index,
            candidates(index, set(config.channels), captions | edited_captions(storage, model)),
            read_withdrawn(storage, model),
            now,
            context.log,
        )
    )
    entries = list(read_ledger(storage, model).values())
    coming = upcoming(entries, now)
    calendar_key = f"{asset_prefix(model, ASSET)}calendar.ics"
    storage.put_bytes(calendar_key, calendar_ics(model, coming, now), "text/calendar")
    storage.put_bytes(written_key(model), texts_csv(_text_rows(spec, index, entries, written)), "text/csv")
    dry_run = index.dry_run or posting.simulated
    write_index(storage, index.model_copy(update={"calendar_key": calendar_key, "dry_run": dry_run}))
    states = Counter(entry.state for entry in entries)
    metadata: dict[str, object] = {
        "dagster/uri": dg.MetadataValue.path(storage.uri(index_key(model, ASSET))),
        "dagster/row_count": len(coming),
        "mode": config.mode,
        "timezone": config.timezone,
        "posts_created": report.created,
        "posts_reconciled": report.reconciled,
        "posts_resent_after_reconciling": report.resent,
        "posts_deleted_for_withdrawn_exports": report.deleted,
        "posts_rejected": len(report.rejected),
        "exports_waiting": len(index.backlog) - sum(states[s] for s in ("sending", "created", "deleted")),
        **{f"ledger_{state}": count for state, count in sorted(states.items())},
        "calendar_ics": dg.MetadataValue.path(storage.uri(calendar_key)),
        "post_texts_csv": dg.MetadataValue.path(storage.uri(written_key(model))),
        "upcoming_posts": dg.MetadataValue.md(upcoming_table(storage, coming, config.timezone)),
    }
    if report.rejected:
        metadata["rejected"] = dg.MetadataValue.md("\n".join(f"- {reason}" for reason in report.rejected[:20]))
    if report.limited_channels:
        metadata["daily_limit_reached"] = ", ".join(report.limited_channels)
    if dry_run:
        metadata["dry_run"] = True
    return dg.MaterializeResult(metadata=metadata, check_results=check_posts(entries, config))


def _previous_index(storage: StorageResource, model: str) -> ScheduledPosts:
    if not storage.exists(index_key(model, ASSET)):
        return ScheduledPosts(model=model)
    return ScheduledPosts.model_validate_json(storage.get_bytes(index_key(model, ASSET)))


def _text_rows(
    spec: ModelSpec, index: ScheduledPosts, entries: list[PostEntry], written: dict[str, str]
) -> list[TextRow]:
    """Every approved export with its caption: what was sent, or what will be (written or suggested)."""
    sent = {(e.export_id, e.platform): e for e in entries}
    rows = []
    for item in index.backlog:
        if item.platform not in spec.posting.channels:
            continue
        entry = sent.get((item.export_id, item.platform))
        planned = written.get(item.export_id) or suggested_caption(item.prompt, spec)
        caption = entry.text.split("\n\n", 1)[0] if entry else planned
        file = item.export_key.rsplit("/", 1)[-1]
        rows.append(TextRow(item.export_id, item.platform, file, entry.state if entry else "waiting", caption))
    return rows
