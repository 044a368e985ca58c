"""SimulatedMetricsResource: plausible, seeded engagement for posts that went nowhere, labelled dry_run.

Numbers are a pure function of the post id, the image's prompt and the post's age, so a rerun reads the
same values and a demo shows the loop working: reach is log-normal around ~1,500 and grows over the first
two days; the engagement rate depends on the prompt (`simulated_rate`), so some prompt packs are built to
do better than others; a post younger than six hours has no numbers yet, like a real service.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from modelcrew_assets.post_metrics.provider import MetricsServiceResource, PostReading, PostRef

FIRST_NUMBERS_AFTER = timedelta(hours=6)
BASE_RATE = 0.03
RATE_SPREAD = 0.05  # the best prompt's rate is up to this much above the base


def unit(*parts: str) -> float:
    """A uniform number in [0, 1) fixed by the parts."""
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def simulated_rate(prompt: str) -> float:
    """The built-in engagement per reach of a prompt pack: a fixed property of its text."""
    return BASE_RATE + RATE_SPREAD * unit("pack", prompt)


def simulated_counts(post_id: str, prompt: str, age: timedelta) -> dict[str, float] | None:
    if age < FIRST_NUMBERS_AFTER:
        return None
    # Box-Muller on two fixed uniforms: reach is log-normal, the same for the same post.
    u1, u2 = max(unit("reach", post_id), 1e-12), unit("angle", post_id)
    normal = math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)
    growth = min(1.0, age / timedelta(hours=48))
    reach = round(1500 * math.exp(0.5 * normal) * (0.4 + 0.6 * growth))
    noise = 0.8 + 0.4 * unit("noise", post_id)
    engagements = reach * simulated_rate(prompt) * noise
    return {
        "reach": float(reach),
        "impressions": float(round(reach * 1.3)),
        "views": float(round(reach * 1.6)),
        "reactions": float(round(engagements * 0.8)),
        "comments": float(round(engagements * 0.08)),
        "shares": float(round(engagements * 0.05)),
        "saves": float(round(engagements * 0.07)),
    }


class SimulatedMetricsResource(MetricsServiceResource):
    """Seeded engagement for simulated posts; everything it makes says dry_run."""

    simulated: ClassVar[bool] = True

    @asynccontextmanager
    async def session(self, model: str) -> AsyncIterator[SimulatedMetricsSession]:
        yield SimulatedMetricsSession()


class SimulatedMetricsSession:
    async def read(self, posts: list[PostRef]) -> list[PostReading]:
        now = datetime.now(UTC)
        readings = []
        for post in posts:
            counts = simulated_counts(post.post_id, post.prompt or post.text, now - post.due_at)
            note = "" if counts else "simulated: no numbers in the first hours"
            readings.append(
                PostReading(post.post_id, "simulated", counts, updated_at=now if counts else None, note=note)
            )
        return readings
