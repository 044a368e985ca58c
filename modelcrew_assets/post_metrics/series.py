"""The time series: one CSV row per post per read, one file per read (storage has no append).

`models/<m>/post_metrics/reads/<read time>.csv`; the newest row per (post, source) is the post's latest
reading. Status, decided when read: `pending` (no numbers yet, younger than the settle window), `late` (no
numbers past it; read again daily until the tracking window ends), `early` (numbers, still settling: shown,
not used for estimates), `settled` (numbers past the settle window: what the estimates use), `unavailable`
(the source cannot give metrics now). A post without numbers is never recorded as 0.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from typing import Literal

from modelcrew_assets.asset_names import POST_METRICS
from modelcrew_assets.object_store import Storage
from modelcrew_assets.post_metrics.provider import COUNTS, ENGAGEMENTS, PostReading
from modelcrew_assets.storage_keys import asset_prefix

Status = Literal["pending", "late", "early", "settled", "unavailable"]


@dataclass(frozen=True)
class MetricRow:
    read_at: datetime
    post_id: str
    export_id: str
    platform: str
    source: str
    status: str
    posted_at: datetime
    updated_at: datetime | None = None
    reach: float | None = None
    impressions: float | None = None
    views: float | None = None
    reactions: float | None = None
    comments: float | None = None
    shares: float | None = None
    saves: float | None = None
    engagement_rate: float | None = None  # percent, the source's own figure when it gives one
    dry_run: bool = False
    note: str = ""

    @property
    def engagements(self) -> float:
        return sum(getattr(self, name) or 0.0 for name in ENGAGEMENTS)

    @property
    def audience(self) -> float:
        """People reached; where a platform reports only views (TikTok photo posts), the views."""
        return self.reach or self.views or 0.0


COLUMNS = tuple(f.name for f in fields(MetricRow))


def reads_prefix(model: str) -> str:
    return f"{asset_prefix(model, POST_METRICS)}reads/"


def status_of(reading: PostReading, posted_at: datetime, now: datetime, settle: timedelta) -> Status:
    settled_by = posted_at + settle
    if reading.counts is None:
        if not reading.available:
            return "unavailable"
        return "pending" if now < settled_by else "late"
    return "early" if now < settled_by else "settled"


def row_for(
    reading: PostReading,
    export_id: str,
    platform: str,
    posted_at: datetime,
    now: datetime,
    status: Status,
    dry_run: bool,
) -> MetricRow:
    counts = reading.counts or {}
    return MetricRow(
        read_at=now,
        post_id=reading.post_id,
        export_id=export_id,
        platform=platform,
        source=reading.source,
        status=status,
        posted_at=posted_at,
        updated_at=reading.updated_at,
        **{name: counts.get(name) for name in COUNTS},
        engagement_rate=reading.engagement_rate,
        dry_run=dry_run,
        note=reading.note,
    )


def write_read(storage: Storage, model: str, rows: list[MetricRow], now: datetime) -> str:
    key = f"{reads_prefix(model)}{now:%Y%m%dT%H%M%SZ}.csv"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({name: _text(value) for name, value in asdict(row).items()})
    storage.put_bytes(key, buffer.getvalue().encode("utf-8"), "text/csv")
    return key


def read_history(storage: Storage, model: str) -> list[MetricRow]:
    rows = []
    for item in sorted(storage.list(reads_prefix(model)), key=lambda i: i.key):
        if item.key.endswith(".csv"):
            rows += [_row(raw) for raw in csv.DictReader(io.StringIO(storage.get_bytes(item.key).decode("utf-8")))]
    return rows


def latest(rows: list[MetricRow]) -> dict[tuple[str, str], MetricRow]:
    """(post id, source) -> its newest row."""
    newest: dict[tuple[str, str], MetricRow] = {}
    for row in sorted(rows, key=lambda r: r.read_at):
        newest[(row.post_id, row.source)] = row
    return newest


def best_settled(rows: list[MetricRow]) -> dict[str, MetricRow]:
    """post id -> its latest settled reading, Instagram's own over Buffer's where both exist."""
    preference = {"instagram": 0, "buffer": 1}
    chosen: dict[str, MetricRow] = {}
    for (post_id, source), row in latest(rows).items():
        if row.status != "settled":
            continue
        current = chosen.get(post_id)
        if current is None or preference.get(source, 2) < preference.get(current.source, 2):
            chosen[post_id] = row
    return chosen


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _row(raw: dict[str, str]) -> MetricRow:
    def number(name: str) -> float | None:
        return float(raw[name]) if raw.get(name) else None

    return MetricRow(
        read_at=datetime.fromisoformat(raw["read_at"]),
        post_id=raw["post_id"],
        export_id=raw["export_id"],
        platform=raw["platform"],
        source=raw["source"],
        status=raw["status"],
        posted_at=datetime.fromisoformat(raw["posted_at"]),
        updated_at=datetime.fromisoformat(raw["updated_at"]) if raw.get("updated_at") else None,
        **{name: number(name) for name in (*COUNTS, "engagement_rate")},
        dry_run=raw.get("dry_run") == "True",
        note=raw.get("note", ""),
    )
