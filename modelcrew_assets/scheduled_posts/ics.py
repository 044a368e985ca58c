"""calendar.ics: the upcoming posts as an iCalendar feed (RFC 5545) a person can subscribe to."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from modelcrew_assets.scheduled_posts.ledger import PostEntry

_EVENT_MINUTES = 15


def calendar_ics(model: str, entries: Iterable[PostEntry], now: datetime) -> bytes:
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//modelcrew//scheduled_posts//EN",
        "CALSCALE:GREGORIAN",
        f"X-WR-CALNAME:{_escape(f'{model} posts')}",
    ]
    for entry in entries:
        if entry.due_at is None:
            continue
        summary = f"{entry.platform} {entry.mode}: {entry.text.splitlines()[0][:60]}"
        description = f"{entry.text}\n\nstate: {entry.state} {entry.remote_status}".strip()
        lines += [
            "BEGIN:VEVENT",
            f"UID:{entry.export_id}-{entry.platform}@{model}.modelcrew",
            f"DTSTAMP:{_stamp(now)}",
            f"DTSTART:{_stamp(entry.due_at)}",
            f"DTEND:{_stamp(entry.due_at + timedelta(minutes=_EVENT_MINUTES))}",
            f"SUMMARY:{_escape(summary)}",
            f"DESCRIPTION:{_escape(description)}",
            f"URL:{entry.asset_url}",
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return ("\r\n".join(_fold(line) for line in lines) + "\r\n").encode("utf-8")


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _fold(line: str) -> str:
    """Lines longer than 75 octets continue on the next line after a space (RFC 5545 3.1)."""
    data, parts = line.encode("utf-8"), []
    while len(data) > 75:
        cut = 75 if not parts else 74
        while cut > 0 and (data[cut] & 0xC0) == 0x80:  # never split a UTF-8 character
            cut -= 1
        parts.append(data[:cut].decode("utf-8"))
        data = data[cut:]
    parts.append(data.decode("utf-8"))
    return "\r\n ".join(parts)
