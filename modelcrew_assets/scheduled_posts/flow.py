"""One scheduled_posts run, provider-neutral: reconcile what an earlier run left unsure, delete withdrawn
posts not yet sent, then fill the next free slots. Every createPost is preceded by its ledger entry."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from modelcrew_assets.manifest import ModelSpec, PostingSection
from modelcrew_assets.object_store import Storage
from modelcrew_assets.scheduled_posts.backlog import export_id
from modelcrew_assets.scheduled_posts.calendar import CalendarRules, Candidate, Taken, ordered, plan
from modelcrew_assets.scheduled_posts.index import CachedChannel, ScheduledPosts
from modelcrew_assets.scheduled_posts.ledger import LIVE_STATES, PostEntry, read_ledger, write_entry
from modelcrew_assets.scheduled_posts.posting import (
    PUBLISH_PREFIX,
    AmbiguousPostError,
    Channel,
    PostingError,
    PostingServiceResource,
    PostingSession,
    PostRejectedError,
    PostRequest,
    RemotePost,
)
from modelcrew_assets.scheduled_posts.text import post_text

RECONCILE_WINDOW = timedelta(minutes=2)
_CONTENT_TYPES = {"image": "image/jpeg", "video": "video/mp4"}
# Rejections that every further post would get too: the run stops at the first one.
SETUP_PROBLEMS = ("system", "unauthorized", "not_found")
QUEUE_RECONCILE_SPAN = timedelta(days=400)  # a queued post's dueAt is whatever Buffer's queue gave it
_INSTAGRAM_TYPES = {"instagram_story": "story"}


@dataclass(frozen=True)
class RunReport:
    created: int = 0
    reconciled: int = 0
    resent: int = 0
    rejected: tuple[str, ...] = ()
    deleted: int = 0
    limited_channels: tuple[str, ...] = ()


@dataclass
class _Run:
    storage: Storage
    posting: PostingServiceResource
    session: PostingSession
    spec: ModelSpec
    channels: dict[str, Channel]
    now: datetime
    log: logging.Logger
    report: RunReport = RunReport()


async def run_posting(
    storage: Storage,
    posting: PostingServiceResource,
    spec: ModelSpec,
    index: ScheduledPosts,
    candidates: list[Candidate],
    withdrawn: set[str],
    now: datetime,
    log: logging.Logger,
) -> tuple[ScheduledPosts, RunReport]:
    """Post what the calendar allows; returns the index to store (with the channel cache) and what happened."""
    model, config = spec.name, spec.posting
    async with posting.session(storage, model) as session:
        channels, index = await _channels(session, spec, index)
        run = _Run(storage, posting, session, spec, channels, now, log)
        ledger = read_ledger(storage, model)
        for entry in [e for e in ledger.values() if e.state == "sending"]:
            ledger[(entry.export_id, entry.platform)] = await _reconcile(run, entry, _is_withdrawn(entry, withdrawn))
        for entry in [e for e in ledger.values() if e.state == "created" and _is_withdrawn(e, withdrawn)]:
            ledger[(entry.export_id, entry.platform)] = await _withdraw(run, entry)
        limited = await session.channels_at_daily_limit(sorted({c.id for c in channels.values()}))
        live = {key for key, entry in ledger.items() if entry.state in LIVE_STATES}
        open_candidates = [
            c
            for c in candidates
            if (c.export_id, c.platform) not in live
            and not _candidate_withdrawn(c, withdrawn)
            and c.platform in channels
            and channels[c.platform].id not in limited
        ]
        taken = [Taken(e.platform, e.due_at) for e in ledger.values() if e.state in LIVE_STATES and e.due_at]
        slots = _slots(config, open_candidates, taken, now)
        stopped: set[str] = set(limited)
        for candidate, due_at in slots:
            if channels[candidate.platform].id in stopped:
                continue
            entry = await _send(
                run, _new_entry(run, candidate, due_at, ledger.get((candidate.export_id, candidate.platform)))
            )
            if entry.state == "rejected" and entry.reason.startswith("limit_reached"):
                stopped.add(entry.channel_id)
        run.report = dataclasses.replace(
            run.report, limited_channels=tuple(sorted(p for p, c in channels.items() if c.id in stopped))
        )
    return index, run.report


def _slots(
    config: PostingSection, candidates: list[Candidate], taken: list[Taken], now: datetime
) -> list[tuple[Candidate, datetime | None]]:
    tz = ZoneInfo(config.timezone)
    if config.mode == "queue":
        # Buffer's queue picks the times; a run adds at most a day's worth per platform.
        per_platform: dict[str, list[Candidate]] = {}
        for candidate in ordered(candidates):
            per_platform.setdefault(candidate.platform, []).append(candidate)
        return [(c, None) for queue in per_platform.values() for c in queue[: config.max_per_day]]
    platforms = {c.platform for c in candidates}
    rules = CalendarRules(
        slots={p: config.slots.get(p, config.default_slots) for p in platforms},
        tz=tz,
        max_per_day=config.max_per_day,
        start_date=config.start_date,
    )
    return list(plan(candidates, rules, taken, now))


async def _channels(
    session: PostingSession, spec: ModelSpec, index: ScheduledPosts
) -> tuple[dict[str, Channel], ScheduledPosts]:
    wanted = spec.posting.channels
    fingerprint = hashlib.sha256(
        json.dumps({p: ref.model_dump() for p, ref in wanted.items()}, sort_keys=True).encode()
    ).hexdigest()
    if index.channels_fingerprint == fingerprint and set(index.channels) == set(wanted):
        return {p: Channel(c.id, c.service, c.name, c.organization_id) for p, c in index.channels.items()}, index
    resolved = await session.resolve_channels(dict(wanted)) if wanted else {}
    cached = {p: CachedChannel(**dataclasses.asdict(c)) for p, c in resolved.items()}
    return resolved, index.model_copy(update={"channels_fingerprint": fingerprint, "channels": cached})


def _new_entry(run: _Run, candidate: Candidate, due_at: datetime | None, previous: PostEntry | None) -> PostEntry:
    channel = run.channels[candidate.platform]
    publish_key = f"{PUBLISH_PREFIX}{run.spec.name}/{candidate.platform}/{candidate.export_key.rsplit('/', 1)[-1]}"
    text = post_text(candidate.prompt, run.spec, channel.service, candidate.caption)
    return PostEntry(
        export_id=candidate.export_id,
        platform=candidate.platform,
        export_key=candidate.export_key,
        source_key=candidate.source_key,
        batch_id=candidate.batch_id,
        channel_id=channel.id,
        mode=run.spec.posting.mode,
        due_at=due_at,
        publish_key=publish_key,
        asset_url=run.posting.public_url(publish_key),
        text=text.text,
        title=text.title,
        state="sending",
        attempts=previous.attempts if previous else 0,
        dry_run=run.posting.simulated,
        updated_at=run.now,
        media=candidate.media,
        poster_key=candidate.poster_key,
        thumbnail_offset_ms=candidate.thumbnail_offset_ms,
    )


async def _send(run: _Run, entry: PostEntry) -> PostEntry:
    """Publish the media, write the ledger entry, then createPost; an unsure answer is reconciled at once."""
    model = run.spec.name
    if not run.storage.exists(entry.publish_key):
        run.storage.put_bytes(entry.publish_key, run.storage.get_bytes(entry.export_key), _CONTENT_TYPES[entry.media])
    entry = write_entry(run.storage, model, entry.model_copy(update={"attempts": entry.attempts + 1}))
    video = entry.media == "video"
    request = PostRequest(
        channel=run.channels[entry.platform],
        text=entry.text,
        media_url=entry.asset_url,
        due_at=entry.due_at,
        draft=entry.mode == "draft",
        title=entry.title,
        instagram_type=_INSTAGRAM_TYPES.get(entry.platform, "reel" if video else "post"),  # a story stays one
        video=video,
        thumbnail_offset_ms=entry.thumbnail_offset_ms,
    )
    try:
        post = await run.session.create_post(request)
    except PostRejectedError as error:
        run.log.warning(f"scheduled_posts: {entry.platform} {entry.file_name}: {error}")
        run.report = dataclasses.replace(run.report, rejected=(*run.report.rejected, f"{entry.file_name}: {error}"))
        rejected = write_entry(
            run.storage, model, entry.model_copy(update={"state": "rejected", "reason": f"{error.kind}: {error}"})
        )
        if error.kind in SETUP_PROBLEMS:
            raise PostingError(f"scheduled_posts: {error}; fix the setup, then run again") from None
        return rejected
    except AmbiguousPostError as error:
        run.log.warning(f"scheduled_posts: {entry.platform} {entry.file_name}: {error}; reconciling")
        found = await _find(run, entry)
        if found is None:
            return entry  # stays "sending": the next run reconciles again before sending
        run.report = dataclasses.replace(run.report, reconciled=run.report.reconciled + 1)
        return _created(run, entry, found)
    run.report = dataclasses.replace(run.report, created=run.report.created + 1)
    return _created(run, entry, post)


async def _reconcile(run: _Run, entry: PostEntry, withdrawn: bool) -> PostEntry:
    """An entry an earlier run left "sending": adopt the post if the service has it (a withdrawn one is then
    deleted with the others), else send it once now, unless its slot has passed or it was withdrawn."""
    found = await _find(run, entry)
    if found is not None:
        run.report = dataclasses.replace(run.report, reconciled=run.report.reconciled + 1)
        return _created(run, entry, found)
    reason = "export withdrawn" if withdrawn else ""
    if not reason and entry.due_at is not None and entry.due_at < run.now:
        reason = "slot passed before the post was confirmed"
    if reason:
        state = "deleted" if withdrawn else "rejected"
        return write_entry(run.storage, run.spec.name, entry.model_copy(update={"state": state, "reason": reason}))
    run.report = dataclasses.replace(run.report, resent=run.report.resent + 1)
    return await _send(run, entry)


async def _find(run: _Run, entry: PostEntry) -> RemotePost | None:
    channel = run.channels.get(entry.platform)
    if channel is None:
        return None
    if entry.due_at is not None:
        start, end = entry.due_at - RECONCILE_WINDOW, entry.due_at + RECONCILE_WINDOW
    else:
        start, end = entry.updated_at - RECONCILE_WINDOW, entry.updated_at + QUEUE_RECONCILE_SPAN
    name = entry.file_name
    for post in await run.session.find_posts(channel, start, end):
        if any(url == entry.asset_url or url.rsplit("/", 1)[-1].split("?", 1)[0] == name for url in post.media_urls):
            return post
    return None


def _created(run: _Run, entry: PostEntry, post: RemotePost) -> PostEntry:
    update = {"state": "created", "post_id": post.id, "remote_status": post.status, "reason": ""}
    if entry.due_at is None and post.due_at is not None:
        update["due_at"] = post.due_at.astimezone(UTC)
    return write_entry(run.storage, run.spec.name, entry.model_copy(update=update))


async def _withdraw(run: _Run, entry: PostEntry) -> PostEntry:
    if entry.due_at is not None and entry.due_at <= run.now:
        return entry  # already out (or going out): a sent post is left alone
    await run.session.delete_post(entry.post_id or "")
    run.report = dataclasses.replace(run.report, deleted=run.report.deleted + 1)
    return write_entry(
        run.storage, run.spec.name, entry.model_copy(update={"state": "deleted", "reason": "export withdrawn"})
    )


def _is_withdrawn(entry: PostEntry, withdrawn: set[str]) -> bool:
    return bool(_withdrawal_names(entry.export_key, entry.export_id, entry.batch_id, entry.source_key) & withdrawn)


def _candidate_withdrawn(candidate: Candidate, withdrawn: set[str]) -> bool:
    names = _withdrawal_names(candidate.export_key, candidate.export_id, candidate.batch_id, candidate.source_key)
    return bool(names & withdrawn)


def _withdrawal_names(export_key: str, identity: str, batch_id: str, source_key: str) -> set[str]:
    """What withdraws a post: its file's key or name, its export id, or its source image's export id (for an
    image that is its own; a reel goes with the still it was made from)."""
    return {export_key, export_key.rsplit("/", 1)[-1], identity, export_id(batch_id, source_key)}
