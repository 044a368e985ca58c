"""The posting calendar, pure: which export (or reel) goes out in which slot.

Slots are the [posting] local times of each day in the model's timezone, from the start date (or today) on.
Each run fills the next free slots: never two posts of one model in one slot of a platform, never more
than `max_per_day` per platform and local day; candidates go oldest batch first, best identity score first
within a batch (exports without a score, today every image, after scored ones such as reels, then in image
order)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

HORIZON_DAYS = 366
MIN_LEAD = timedelta(minutes=10)  # a slot closer than this is skipped: the post could not be reviewed


@dataclass(frozen=True)
class Candidate:
    export_id: str
    platform: str
    export_key: str
    source_key: str
    batch_id: str
    batch_rank: int  # 0 for the oldest batch seen
    image_index: int
    prompt: str = ""
    caption: str | None = None  # a caption a person wrote (post_texts.csv); None: from the prompt
    identity: float | None = None
    media: Literal["image", "video"] = "image"
    poster_key: str = ""  # video only
    thumbnail_offset_ms: int | None = None  # video only


@dataclass(frozen=True)
class Taken:
    platform: str
    due_at: datetime  # UTC


@dataclass(frozen=True)
class CalendarRules:
    slots: dict[str, tuple[str, ...]]  # platform -> "HH:MM" local times, sorted
    tz: ZoneInfo
    max_per_day: int
    start_date: date | None


def ordered(candidates: Iterable[Candidate]) -> list[Candidate]:
    return sorted(
        candidates,
        key=lambda c: (c.batch_rank, c.identity is None, -(c.identity or 0.0), c.image_index, c.platform),
    )


def plan(
    candidates: Iterable[Candidate], rules: CalendarRules, taken: Iterable[Taken], now: datetime
) -> list[tuple[Candidate, datetime]]:
    """(candidate, UTC slot) for as many candidates as free slots allow, per platform, in priority order."""
    busy = {(t.platform, t.due_at.astimezone(UTC)) for t in taken}
    per_day = Counter((t.platform, t.due_at.astimezone(rules.tz).date()) for t in taken)
    assigned = []
    by_platform: dict[str, list[Candidate]] = {}
    for candidate in ordered(candidates):
        by_platform.setdefault(candidate.platform, []).append(candidate)
    for platform, queue in by_platform.items():
        slots = _free_slots(platform, rules, busy, per_day, now)
        for candidate, slot in zip(queue, slots, strict=False):  # more slots than candidates, or fewer
            assigned.append((candidate, slot))
    return assigned


def _free_slots(platform: str, rules: CalendarRules, busy: set, per_day: Counter, now: datetime) -> Iterable[datetime]:
    today = now.astimezone(rules.tz).date()
    first = max(today, rules.start_date) if rules.start_date else today
    times = [time.fromisoformat(value) for value in rules.slots[platform]]
    for offset in range(HORIZON_DAYS):
        day = first + timedelta(days=offset)
        for slot_time in times:
            if per_day[(platform, day)] >= rules.max_per_day:
                break
            slot = datetime.combine(day, slot_time, rules.tz).astimezone(UTC)
            if slot < now + MIN_LEAD or (platform, slot) in busy:
                continue
            busy.add((platform, slot))
            per_day[(platform, day)] += 1
            yield slot
