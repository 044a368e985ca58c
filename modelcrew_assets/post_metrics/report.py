"""What a person sees: per-platform summaries and two small charts (PNG, inline in the UI's markdown)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from PIL import Image, ImageDraw

from modelcrew_assets.imaging import markdown_image
from modelcrew_assets.post_metrics.index import ArmEstimate
from modelcrew_assets.post_metrics.series import MetricRow

_WIDTH, _ROW, _LABEL = 640, 26, 230


def summary_table(latest_rows: list[MetricRow], now: datetime) -> str:
    """Posts, reach and engagement per reach by platform, over the last 7 and 30 days (by post time)."""
    lines = ["| platform | window | posts measured | reach | engagement / reach |", "| --- | --- | --- | --- | --- |"]
    for platform in sorted({row.platform for row in latest_rows}):
        for days in (7, 30):
            rows = [
                r
                for r in latest_rows
                if r.platform == platform and r.status in ("early", "settled") and r.posted_at >= now - timedelta(days)
            ]
            reach = sum(r.audience for r in rows)
            rate = f"{sum(r.engagements for r in rows) / reach:.2%}" if reach else "-"
            lines.append(f"| {platform} | {days} d | {len(rows)} | {reach:,.0f} | {rate} |")
    return "\n".join(lines)


def daily_chart(latest_rows: list[MetricRow], now: datetime) -> str:
    """Engagement per reach of the posts of each of the last 30 days, as bars."""
    days: dict[str, list[MetricRow]] = defaultdict(list)
    for row in latest_rows:
        if row.status in ("early", "settled") and row.posted_at >= now - timedelta(days=30):
            days[row.posted_at.date().isoformat()].append(row)
    bars = []
    for day, rows in sorted(days.items()):
        reach = sum(r.audience for r in rows)
        bars.append((day, sum(r.engagements for r in rows) / reach if reach else 0.0, None, None, len(rows)))
    return _chart(bars, "engagement per reach by day posted") if bars else "no measured posts in the last 30 days"


def arms_chart(arms: list[ArmEstimate]) -> str:
    """Each arm's posterior mean with its 95% credible interval."""
    bars = [(f"{a.label[:32]} ({a.posts})", a.mean, a.low, a.high, a.posts) for a in arms]
    return _chart(bars, "engagement per reach, mean and 95% interval") if bars else "no arms measured yet"


def arms_table(arms: list[ArmEstimate]) -> str:
    lines = ["| kind | arm | posts | mean | 95% interval |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {a.kind} | {a.label[:80]} | {a.posts} | {a.mean:.2%} | {a.low:.2%} – {a.high:.2%} |" for a in arms]
    return "\n".join(lines)


def _chart(bars: list[tuple[str, float, float | None, float | None, int]], title: str) -> str:
    top = max(max(b[1], b[3] or 0.0) for b in bars) or 1.0
    image = Image.new("RGB", (_WIDTH, _ROW * (len(bars) + 1) + 8), "white")
    draw = ImageDraw.Draw(image)
    draw.text((8, 6), title, fill="black")
    span = _WIDTH - _LABEL - 70
    for i, (label, value, low, high, _) in enumerate(bars):
        y = _ROW * (i + 1) + 6
        draw.text((8, y + 4), label, fill="black")
        draw.rectangle((_LABEL, y + 3, _LABEL + int(span * value / top), y + _ROW - 5), fill=(66, 133, 244))
        if low is not None and high is not None:
            x0, x1, mid = _LABEL + int(span * low / top), _LABEL + int(span * high / top), y + _ROW // 2 - 1
            draw.line((x0, mid, x1, mid), fill="black", width=2)
            draw.line((x0, mid - 5, x0, mid + 5), fill="black")
            draw.line((x1, mid - 5, x1, mid + 5), fill="black")
        draw.text((_WIDTH - 62, y + 4), f"{value:.2%}", fill="black")
    return markdown_image(image, title, max_side=_WIDTH, quality=85)
