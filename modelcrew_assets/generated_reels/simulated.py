"""SimulatedVideoResource: a stand-in for the image-to-video API that asks no service and costs nothing.
Its "video" is a real MP4, a slow push-in on the still made with ffmpeg, so the ledger, budget,
post-processing and posting run end to end; everything it makes says dry_run."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import ClassVar

from modelcrew_assets.generated_reels.ffmpeg import zoom_clip
from modelcrew_assets.generated_reels.providers import VideoRequest, VideoServiceResource
from modelcrew_assets.generated_reels.stills import PROMPT_STILL_SIZE
from modelcrew_assets.object_store import Storage


class SimulatedVideoResource(VideoServiceResource):
    """Slow zooms made locally; `dry-run-video-...` job ids; free."""

    provider_name: ClassVar[str] = "dry_run"
    default_model: ClassVar[str] = "slow-zoom"
    simulated: ClassVar[bool] = True

    @asynccontextmanager
    async def videos(self, storage: Storage) -> AsyncIterator[SimulatedVideos]:
        yield SimulatedVideos()


class SimulatedVideos:
    async def create(self, request: VideoRequest) -> str:
        identity = f"{request.still_key}|{request.prompt}|{request.seed}|{request.duration}"
        return "dry-run-video-" + hashlib.sha256(identity.encode()).hexdigest()[:16]

    async def finish(self, job_id: str, request: VideoRequest) -> bytes:
        return await asyncio.to_thread(zoom_clip, request.still_jpeg, request.duration, PROMPT_STILL_SIZE)
