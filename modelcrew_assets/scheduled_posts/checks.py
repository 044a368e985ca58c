"""The stage's asset checks, computed from the ledger in storage (not from what the run believes)."""

from __future__ import annotations

from collections import Counter
from zoneinfo import ZoneInfo

import dagster as dg

from modelcrew_assets.manifest import PostingSection
from modelcrew_assets.scheduled_posts.ledger import LIVE_STATES, PostEntry

ONE_PER_SLOT = "no_two_posts_share_a_slot"
ONE_PER_SLOT_MEANING = "No two live posts of the model are due in the same slot of one platform."
WITHIN_DAILY_MAX = "posts_per_day_within_the_daily_max"
WITHIN_DAILY_MAX_MEANING = "No platform has more live posts on one local day than [posting].max_per_day."
NEVER_TWICE = "no_export_is_posted_twice"
NEVER_TWICE_MEANING = "Every live post has its own post id and asset URL: no export went to one platform twice."


def check_posts(entries: list[PostEntry], config: PostingSection) -> list[dg.AssetCheckResult]:
    live = [e for e in entries if e.state in LIVE_STATES]
    tz = ZoneInfo(config.timezone)
    slots = Counter((e.platform, e.due_at) for e in live if e.due_at)
    days = Counter((e.platform, e.due_at.astimezone(tz).date()) for e in live if e.due_at)
    ids = Counter(e.post_id for e in live if e.post_id)
    urls = Counter((e.platform, e.asset_url) for e in live)
    return [
        _result(
            ONE_PER_SLOT,
            [f"{p} at {t:%Y-%m-%d %H:%M}Z: {n} posts" for (p, t), n in slots.items() if n > 1],
            ONE_PER_SLOT_MEANING,
        ),
        _result(
            WITHIN_DAILY_MAX,
            [
                f"{p} on {d}: {n} posts (max {config.max_per_day})"
                for (p, d), n in days.items()
                if n > config.max_per_day
            ],
            WITHIN_DAILY_MAX_MEANING,
        ),
        _result(
            NEVER_TWICE,
            [f"post {i} recorded {n} times" for i, n in ids.items() if n > 1]
            + [f"{p}: {u} in {n} posts" for (p, u), n in urls.items() if n > 1],
            NEVER_TWICE_MEANING,
        ),
    ]


def _result(name: str, problems: list[str], meaning: str) -> dg.AssetCheckResult:
    metadata: dict[str, object] = {"problems": len(problems)}
    if problems:
        metadata["examples"] = dg.MetadataValue.md("\n".join(f"- {problem}" for problem in problems[:10]))
    return dg.AssetCheckResult(check_name=name, passed=not problems, description=meaning, metadata=metadata)
