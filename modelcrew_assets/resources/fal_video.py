"""FalVideoResource: reels through fal's queue, for the Kling and Pika image-to-video models it hosts.

As followed (fal.ai docs, read 2026: model-apis/inference/queue, inference-api/queue/cancel): `POST
{queue}/{model id}` with `Authorization: Key <FAL_KEY>` and the model's input -> {request_id, status_url,
response_url, cancel_url}; `GET {queue}/{owner}/{app}/requests/{id}/status` -> IN_QUEUE | IN_PROGRESS |
COMPLETED (a failed request is COMPLETED with `error` / `error_type`); `GET .../requests/{id}` -> the
result, `video.url` for video models. The status and result URLs name the model's app without its endpoint
path, so they are derived from the model id and the request id (the ledger keeps only the id). fal fetches
`image_url` itself: a presigned GET works on S3; local storage sends a data URI.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

from pydantic import Field

from modelcrew_assets.generated_reels.providers import (
    VideoJobFailedError,
    VideoProviderError,
    VideoRequest,
    poll_until_done,
)
from modelcrew_assets.object_store import ObjectStore, Storage
from modelcrew_assets.resources.http_api import JsonApiClient
from modelcrew_assets.resources.maxstudio_client import PollSchedule
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.resources.video_api import HttpVideoServiceResource, jpeg_data_uri, neutral_errors
from modelcrew_assets.settings import require_credential

SERVICE = "fal"
API_KEY_ENV = "FAL_KEY"
DEFAULT_QUEUE_URL = "https://queue.fal.run"
DATA_URI_LIMIT = 10_000_000
# Refusals a new request would get too (content moderation); fal bills no failed request.
_NOT_RETRYABLE = ("content_policy_violation", "image_too_small", "image_load_error")


class FalVideoResource(HttpVideoServiceResource):
    """fal's queue (`FAL_KEY`, `FAL_QUEUE_URL`); the model id and its price a second are settings."""

    provider_name: ClassVar[str] = "fal"
    default_model: ClassVar[str] = "fal-ai/kling-video/v2.1/standard/image-to-video"

    api_key: str | None = Field(default=None, description="fal API key (from FAL_KEY)")
    queue_url: str = Field(default=DEFAULT_QUEUE_URL, description="fal's queue root")
    price_per_second_usd: float = Field(default=0.056, ge=0, description="the model's price; check fal's page")
    presigned_url_seconds: int = Field(default=3600, ge=300, description="how long fal may take to fetch the still")

    def check_ready(self, storage: Storage) -> None:
        require_credential(self.api_key, API_KEY_ENV, SERVICE)

    @asynccontextmanager
    async def videos(self, storage: Storage) -> AsyncIterator[FalVideos]:
        key = require_credential(self.api_key, API_KEY_ENV, SERVICE)
        async with self.api(SERVICE, self.queue_url, {"Authorization": f"Key {key}"}) as api:
            yield FalVideos(api, self.schedule(), storage, self.presigned_url_seconds)


class FalVideos:
    def __init__(self, api: JsonApiClient, schedule: PollSchedule, storage: Storage, url_seconds: int):
        self.api = api
        self.schedule = schedule
        self.storage = storage
        self.url_seconds = url_seconds

    async def create(self, request: VideoRequest) -> str:
        body = {
            "prompt": request.prompt[:2500],
            "image_url": self._image_url(request),
            "duration": str(request.duration),
        }
        with neutral_errors("create"):
            answer = await self.api.call(
                "POST", f"/{request.model}", json=body, idempotent=False, label=f"/{request.model}"
            )
        request_id = answer.get("request_id") if isinstance(answer, dict) else None
        if not isinstance(request_id, str) or not request_id:
            raise VideoProviderError(f"{SERVICE} POST /{request.model}: answer has no request_id")
        return request_id

    async def finish(self, job_id: str, request: VideoRequest) -> bytes:
        base = f"/{_app_id(request.model)}/requests/{job_id}"
        await poll_until_done(lambda: self._completed(base, job_id), self.schedule, f"{SERVICE} request {job_id}")
        with neutral_errors("poll"):
            result = await self.api.call("GET", base)
        url = _video_url(result)
        if url is None:
            raise VideoJobFailedError(f"{SERVICE} request {job_id}: completed without video.url", code="no_video")
        with neutral_errors("download"):
            return await self.api.download(url)

    def _image_url(self, request: VideoRequest) -> str:
        if isinstance(self.storage, StorageResource | ObjectStore) and not self.storage.is_local:
            return self.storage.presigned_get_url(request.still_key, self.url_seconds)
        return jpeg_data_uri(request.still_jpeg, request.still_key, DATA_URI_LIMIT, SERVICE)

    async def _completed(self, base: str, job_id: str) -> str | None:
        with neutral_errors("poll"):
            status = await self.api.call("GET", f"{base}/status")
        if not isinstance(status, dict) or status.get("status") != "COMPLETED":
            return None  # IN_QUEUE, IN_PROGRESS, or a new word: poll on
        if status.get("error"):
            kind = str(status.get("error_type") or "error")
            raise VideoJobFailedError(
                f"{SERVICE} request {job_id} failed: {kind} ({str(status['error'])[:200]})",
                code=kind,
                retryable=kind not in _NOT_RETRYABLE,
            )
        return "COMPLETED"


def _app_id(model: str) -> str:
    """`fal-ai/kling-video/v2.1/standard/image-to-video` -> `fal-ai/kling-video`: the queue's app."""
    parts = model.strip("/").split("/")
    if len(parts) < 2:
        raise VideoProviderError(
            f"{SERVICE}: model id {model!r} is not <owner>/<app>[/<path>]; check [reels].provider_model"
        )
    return "/".join(parts[:2])


def _video_url(result: Any) -> str | None:
    video = result.get("video") if isinstance(result, dict) else None
    url = video.get("url") if isinstance(video, dict) else None
    return url if isinstance(url, str) and url.startswith(("http://", "https://")) else None
