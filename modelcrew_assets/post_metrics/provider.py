"""The metrics service as the post_metrics stage sees it: a provider interface with no Buffer in it.

`MetricsServiceResource` is what the asset annotates; `session(model)` gives a `MetricsSession` for one
run. Implementations: `BufferMetricsResource` (resources/buffer_metrics.py, live, with optional Instagram
insights from resources/instagram_insights.py) and `SimulatedMetricsResource` (post_metrics/simulated.py).
A reading without numbers is "not reported yet", never zero.
"""

from __future__ import annotations

import abc
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from modelcrew_assets.resources.service import ServiceResource

# The normalised counts kept per read (Buffer's PostMetricType names; Instagram's are mapped onto them).
COUNTS = ("reach", "impressions", "views", "reactions", "comments", "shares", "saves")
ENGAGEMENTS = ("reactions", "comments", "shares", "saves")


@dataclass(frozen=True)
class PostRef:
    post_id: str
    platform: str  # the export platform, e.g. instagram_feed
    service: str  # instagram, tiktok, ...
    channel_id: str
    due_at: datetime  # UTC: when it went out (or was due to)
    text: str = ""
    prompt: str = ""  # the generated image's prompt (the simulated provider's engagement depends on it)


@dataclass(frozen=True)
class PostReading:
    post_id: str
    source: str  # "buffer", "instagram" or "simulated"
    counts: dict[str, float] | None  # None: the service has no numbers for the post yet
    updated_at: datetime | None = None  # when the service last refreshed them (metricsUpdatedAt)
    engagement_rate: float | None = None  # the service's own figure, percent
    note: str = ""  # why there are no numbers, when known
    available: bool = True  # False: the source cannot give metrics at all now (not "not yet")


class MetricsError(RuntimeError):
    """A metrics read that failed for good; the message never carries a secret."""


class MetricsUnavailableError(MetricsError):
    """The service cannot give metrics at all right now (Buffer's experimental field is missing)."""


class MetricsSession(Protocol):
    async def read(self, posts: list[PostRef]) -> list[PostReading]: ...


class MetricsServiceResource(ServiceResource):
    """Where post_metrics reads engagement. Subclasses: BufferMetricsResource (live), SimulatedMetricsResource."""

    @abc.abstractmethod
    def session(self, model: str) -> AbstractAsyncContextManager[MetricsSession]:
        """An async session for one run: `async with metrics.session(model) as s: await s.read(...)`."""
