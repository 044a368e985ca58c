"""The approved set: every export platform_exports has handed over (and every reel, scheduled_posts/reels.py),
kept across batches, minus what a person withdrew (uploads/<model>/posting/withdrawn.txt: one export file
name, export key or export id a line; a still's export id withdraws its reels too)."""

from __future__ import annotations

from pathlib import PurePosixPath

from modelcrew_assets.generated_reels.index import GeneratedReels, stored_identity_scores
from modelcrew_assets.handoffs import GeneratedBatch, MissingUpstreamError, PlatformExports, read_index
from modelcrew_assets.object_store import Storage
from modelcrew_assets.scheduled_posts.calendar import Candidate
from modelcrew_assets.scheduled_posts.index import BacklogItem, ScheduledPosts
from modelcrew_assets.scheduled_posts.reels import reel_items
from modelcrew_assets.storage_keys import upload_prefix


def withdrawn_key(model: str) -> str:
    return f"{upload_prefix(model)}posting/withdrawn.txt"


def export_id(batch_id: str, source_key: str) -> str:
    return f"{batch_id}-{PurePosixPath(source_key).stem}"


def merged_backlog(
    storage: Storage,
    previous: ScheduledPosts,
    exports: PlatformExports,
    reels: GeneratedReels | None,
    reel_platforms: tuple[str, ...],
) -> ScheduledPosts:
    """The previous backlog plus the current exports and reels; a re-rendered image (or re-finished reel)
    replaces its older file."""
    prompts, order = _batch_details(storage, exports)
    # generated_reels scored every still of the batch against the face: the best likeness is posted first.
    likeness = stored_identity_scores(storage, exports.model, exports.batch_id)
    items = {(item.export_id, item.platform): item for item in previous.backlog}
    for export in exports.exports:
        identity = export_id(exports.batch_id, export.source_key)
        items[(identity, export.platform)] = BacklogItem(
            export_id=identity,
            platform=export.platform,
            export_key=export.key,
            source_key=export.source_key,
            batch_id=exports.batch_id,
            image_index=order.get(export.source_key, 0),
            prompt=prompts.get(export.source_key, ""),
            identity=likeness.get(export.source_sha256),
        )
    videos = reel_items(reels, reel_platforms) if reels else []
    items |= {(item.export_id, item.platform): item for item in videos}
    batches = tuple(dict.fromkeys((*previous.batches, exports.batch_id, *(item.batch_id for item in videos))))
    dry_run = previous.dry_run or exports.dry_run or bool(reels and reels.dry_run)
    return previous.model_copy(update={"batches": batches, "backlog": tuple(items.values()), "dry_run": dry_run})


def candidates(index: ScheduledPosts, platforms: set[str], captions: dict[tuple[str, str], str]) -> list[Candidate]:
    rank = {batch: position for position, batch in enumerate(index.batches)}
    return [
        Candidate(
            export_id=item.export_id,
            platform=item.platform,
            export_key=item.export_key,
            source_key=item.source_key,
            batch_id=item.batch_id,
            batch_rank=rank.get(item.batch_id, len(rank)),
            image_index=item.image_index,
            prompt=item.prompt,
            caption=captions.get((item.export_id, item.platform)),
            identity=item.identity,
            media=item.media,
            poster_key=item.poster_key,
            thumbnail_offset_ms=item.thumbnail_offset_ms,
        )
        for item in index.backlog
        if item.platform in platforms
    ]


def read_withdrawn(storage: Storage, model: str) -> set[str]:
    try:
        text = storage.get_bytes(withdrawn_key(model)).decode("utf-8")
    except KeyError:
        return set()
    return {line.split("#", 1)[0].strip() for line in text.splitlines()} - {""}


def _batch_details(storage: Storage, exports: PlatformExports) -> tuple[dict[str, str], dict[str, int]]:
    """Each source image's prompt and position, from the batch the exports were made from."""
    try:
        batch = read_index(storage, exports.model, GeneratedBatch)
    except MissingUpstreamError:
        return {}, {}
    if batch.batch_id != exports.batch_id:
        return {}, {}
    return {i.key: i.prompt for i in batch.images}, {i.key: i.index or n for n, i in enumerate(batch.images)}
