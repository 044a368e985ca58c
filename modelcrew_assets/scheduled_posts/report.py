"""What a person sees in the UI: the upcoming posts as a table with thumbnails (a reel's poster frame),
dates, platform and state."""

from __future__ import annotations

import io
from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

from PIL import Image

from modelcrew_assets.imaging import markdown_image
from modelcrew_assets.object_store import Storage
from modelcrew_assets.scheduled_posts.ledger import PostEntry

_SHOWN = 20
_THUMB = 96


def upcoming(entries: Iterable[PostEntry], now: datetime) -> list[PostEntry]:
    """Posts Buffer holds (or may hold) that have not gone out yet, soonest first; queue posts last."""
    live = [e for e in entries if e.state in ("sending", "created") and (e.due_at is None or e.due_at > now)]
    return sorted(live, key=lambda e: (e.due_at is None, e.due_at or now, e.platform))


def upcoming_table(storage: Storage, entries: list[PostEntry], timezone: str) -> str:
    tz = ZoneInfo(timezone)
    rows = [
        "| preview | when (" + timezone + ") | platform | mode | state | post |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for entry in entries[:_SHOWN]:
        when = entry.due_at.astimezone(tz).strftime("%Y-%m-%d %H:%M") if entry.due_at else "queue"
        state = f"{entry.state} ({entry.remote_status})" if entry.remote_status else entry.state
        platform = f"{entry.platform} (video)" if entry.media == "video" else entry.platform
        rows.append(
            f"| {_thumbnail(storage, entry)} | {when} | {platform} | {entry.mode} | {state} | {entry.post_id or '-'} |"
        )
    if len(entries) > _SHOWN:
        rows.append(f"| | … {len(entries) - _SHOWN} more in calendar.ics | | | | |")
    return "\n".join(rows)


def _thumbnail(storage: Storage, entry: PostEntry) -> str:
    try:
        image = Image.open(io.BytesIO(storage.get_bytes(entry.poster_key or entry.export_key)))
    except (KeyError, OSError):
        return "(missing)"
    return markdown_image(image, entry.file_name, max_side=_THUMB, quality=70)
