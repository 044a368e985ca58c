"""RunwayResource: reels through Runway's image-to-video API (the default live video provider).

As followed (docs.dev.runwayml.com, read 2026: ai-context, assets/inputs, assets/outputs, errors/task-failures):
`POST /v1/image_to_video` {model, promptImage, promptText, ratio, duration, seed} -> {id}; `GET /v1/tasks/{id}`
-> status PENDING | THROTTLED | RUNNING | SUCCEEDED (output: [url]) | FAILED (failureCode) | CANCELLED. Every
request carries `Authorization: Bearer <RUNWAYML_API_SECRET>` and `X-Runway-Version`. promptImage URLs must
be HTTPS and answer a HEAD with Content-Type and Content-Length and no redirect, which a presigned S3 GET
does not, so the still goes as a data URI (limit 5 MB). Output URLs expire within 24-48 h: the MP4 is copied
at once. SAFETY.* failures are moderation refusals: not retried, and Runway keeps the credits.
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
    VideoResultGoneError,
    poll_until_done,
)
from modelcrew_assets.object_store import Storage
from modelcrew_assets.resources.http_api import JsonApiClient
from modelcrew_assets.resources.maxstudio_client import PollSchedule
from modelcrew_assets.resources.video_api import HttpVideoServiceResource, jpeg_data_uri, neutral_errors
from modelcrew_assets.settings import require_credential

SERVICE = "Runway"
API_SECRET_ENV = "RUNWAYML_API_SECRET"
DEFAULT_BASE_URL = "https://api.dev.runwayml.com"
API_VERSION = "2024-11-06"
DATA_URI_LIMIT = 5_000_000


class RunwayResource(HttpVideoServiceResource):
    """Runway (`RUNWAYML_API_SECRET`, `RUNWAYML_BASE_URL`); gen4_turbo costs 5 credits (USD 0.05) a second."""

    provider_name: ClassVar[str] = "runway"
    default_model: ClassVar[str] = "gen4_turbo"

    api_secret: str | None = Field(default=None, description="Runway API secret (from RUNWAYML_API_SECRET)")
    base_url: str = Field(default=DEFAULT_BASE_URL, description="Runway API root")
    api_version: str = Field(default=API_VERSION, description="the X-Runway-Version header")
    ratio: str = Field(default="720:1280", description="output size; 720:1280 is gen4_turbo's portrait ratio")
    price_per_second_usd: float = Field(default=0.05, ge=0)

    def check_ready(self, storage: Storage) -> None:
        require_credential(self.api_secret, API_SECRET_ENV, SERVICE)

    @asynccontextmanager
    async def videos(self, storage: Storage) -> AsyncIterator[RunwayVideos]:
        secret = require_credential(self.api_secret, API_SECRET_ENV, SERVICE)
        headers = {"Authorization": f"Bearer {secret}", "X-Runway-Version": self.api_version}
        async with self.api(SERVICE, self.base_url, headers) as api:
            yield RunwayVideos(api, self.schedule(), self.ratio)


class RunwayVideos:
    def __init__(self, api: JsonApiClient, schedule: PollSchedule, ratio: str):
        self.api = api
        self.schedule = schedule
        self.ratio = ratio

    async def create(self, request: VideoRequest) -> str:
        body = {
            "model": request.model,
            "promptImage": jpeg_data_uri(request.still_jpeg, request.still_key, DATA_URI_LIMIT, SERVICE),
            "promptText": request.prompt[:1000],
            "ratio": self.ratio,
            "duration": request.duration,
            "seed": request.seed,
        }
        with neutral_errors("create"):
            answer = await self.api.call("POST", "/v1/image_to_video", json=body, idempotent=False)
        task_id = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise VideoProviderError(f"{SERVICE} POST /v1/image_to_video: answer has no task id")
        return task_id

    async def finish(self, job_id: str, request: VideoRequest) -> bytes:
        url = await poll_until_done(lambda: self._output_url(job_id), self.schedule, f"{SERVICE} task {job_id}")
        try:
            with neutral_errors("download"):
                return await self.api.download(url)
        except VideoResultGoneError:
            # Each read of the task signs its output afresh: one more read gets a URL that has not expired.
            with neutral_errors("download"):
                return await self.api.download(await self._output_url(job_id) or url)

    async def _output_url(self, job_id: str) -> str | None:
        with neutral_errors("poll"):
            task = await self.api.call("GET", f"/v1/tasks/{job_id}")
        status = task.get("status") if isinstance(task, dict) else None
        if status == "SUCCEEDED":
            return _first_output(task, job_id)
        if status in ("FAILED", "CANCELLED"):
            code = str(task.get("failureCode") or status)
            raise VideoJobFailedError(
                f"{SERVICE} task {job_id} {status.lower()}: {code} ({str(task.get('failure') or 'no reason')[:200]})",
                code=code,
                retryable=not code.startswith("SAFETY."),
                refunded=not code.startswith("SAFETY."),
            )
        return None  # PENDING, THROTTLED (waiting for a slot of the account), RUNNING, or a new word: poll on


def _first_output(task: dict[str, Any], job_id: str) -> str:
    output = task.get("output")
    if not isinstance(output, list) or not output or not str(output[0]).startswith(("http://", "https://")):
        raise VideoProviderError(f"{SERVICE} task {job_id}: SUCCEEDED without an output URL")
    return str(output[0])
