"""The image-to-video service as the generated_reels stage sees it: one small interface, so the ledger,
budget and post-processing are the same code whichever provider runs: Runway (resources/runway.py), fal's
queue for Kling/Pika (resources/fal_video.py) or the labelled local stand-in (simulated.py). Which one a
deployment binds is decided once, in resources/selection.py.

Providers raise only the errors defined here: the flow never sees a concrete service's error types."""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from pydantic import Field

from modelcrew_assets.object_store import Storage
from modelcrew_assets.resources.maxstudio_client import PollSchedule
from modelcrew_assets.resources.service import ServiceResource


class VideoProviderError(Exception):
    """A provider call that failed for good; the message says what and why, never a secret or a URL."""


class AmbiguousVideoCreateError(VideoProviderError):
    """The create request may have reached the provider though no answer came: creating again could bill twice."""


class VideoJobFailedError(VideoProviderError):
    """The provider finished the job as failed. `retryable` is False for refusals a new job would get too
    (Runway's SAFETY.* moderation codes); `refunded` says whether the provider gives the credits back."""

    def __init__(self, message: str, code: str = "", retryable: bool = True, refunded: bool = True):
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        self.refunded = refunded


class VideoResultGoneError(VideoProviderError):
    """A finished job's video can no longer be fetched (its URL expired); a rerun may create another job."""


@dataclass(frozen=True)
class VideoRequest:
    """One reel's job: the still (a 9:16 JPEG, already stored at `still_key`) and what to do with it."""

    still_key: str
    still_jpeg: bytes = field(repr=False)
    prompt: str
    seed: int
    duration: int  # seconds
    model: str  # the provider's model id


class VideoProvider(Protocol):
    async def create(self, request: VideoRequest) -> str:
        """Start a paid job; returns its id the moment the provider gives one."""

    async def finish(self, job_id: str, request: VideoRequest) -> bytes:
        """Poll the job until it is done and return the MP4 (copied at once: output URLs expire)."""


class VideoServiceResource(ServiceResource):
    """The image-to-video service generated_reels asks. Subclasses: RunwayResource, FalVideoResource (live),
    SimulatedVideoResource (dry run)."""

    # Part of every reel key, so videos of different providers never stand in for each other.
    provider_name: ClassVar[str]
    default_model: ClassVar[str]

    price_per_second_usd: float = Field(default=0.0, ge=0, description="USD per second of video, for the budget")
    max_concurrency: int = Field(default=2, ge=1, le=16, description="simultaneous jobs at the provider")
    poll_first_s: float = Field(default=10.0, ge=0, description="wait before a job's first poll")
    poll_interval_s: float = Field(default=5.0, gt=0, description="then poll this often, growing 1.5x")
    poll_max_interval_s: float = Field(default=30.0, gt=0)
    job_timeout_s: float = Field(default=900.0, gt=0, description="give up polling a job after this long")

    def check_ready(self, storage: Storage) -> None:
        """Raise before any call when a run cannot work (no credential)."""

    def model_id(self, configured: str | None) -> str:
        return configured or self.default_model

    def schedule(self) -> PollSchedule:
        return PollSchedule(self.poll_first_s, self.poll_interval_s, 1.5, self.poll_max_interval_s, self.job_timeout_s)

    @abc.abstractmethod
    def videos(self, storage: Storage) -> AbstractAsyncContextManager[VideoProvider]:
        """One run's provider: `async with resource.videos(storage) as provider:`."""


async def poll_until_done(check: Callable[[], Awaitable[str | None]], schedule: PollSchedule, what: str) -> str:
    """Call `check` on the schedule until it returns a result (it raises for a failed job; None: not yet).
    Past the timeout the job keeps its ledger entry, so a rerun polls it again instead of paying."""
    deadline = time.monotonic() + schedule.timeout_s
    delay, interval = schedule.first_s, schedule.interval_s
    while True:
        await asyncio.sleep(max(0.0, min(delay, deadline - time.monotonic())))
        result = await check()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise VideoProviderError(
                f"{what}: not finished after {schedule.timeout_s:.0f}s; the job may still finish: "
                "a rerun polls it again instead of paying for a new one"
            )
        delay, interval = interval, min(schedule.max_interval_s, interval * schedule.growth)
