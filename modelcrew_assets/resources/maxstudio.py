"""MaxStudioResource: live face swaps through the MaxStudio API (maxstudio_client.py), as the swap provider
the swapped_faces flow works with. MaxStudio's own errors stop here: the provider turns them into the
provider-neutral ones of swapped_faces/providers.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import ClassVar, Literal

import httpx
from pydantic import Field

from modelcrew_assets.face_detection import FaceBox
from modelcrew_assets.resources.http_api import AmbiguousRequestError, ApiError, JsonApiClient, RetryPolicy
from modelcrew_assets.resources.maxstudio_client import SERVICE, JobFailedError, MaxStudioClient, PollSchedule
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.resources.storage_backends import StorageNotReachableError
from modelcrew_assets.settings import require_credential
from modelcrew_assets.swapped_faces.inputs import ProviderName, SwapInput
from modelcrew_assets.swapped_faces.providers import (
    AmbiguousCreateError,
    ResultGoneError,
    SwapJobFailedError,
    SwapProvider,
    SwapProviderError,
    SwapServiceResource,
)

DEFAULT_BASE_URL = "https://api.maxstudio.ai"
API_KEY_ENV = "MAXSTUDIO_API_KEY"
# Result URLs that answer these are gone for good: the job counts as failed so a rerun can make a new one.
_RESULT_GONE = (404, 410)


class MaxStudioResource(SwapServiceResource):
    """MaxStudio face swaps (`MAXSTUDIO_API_KEY`, `MAXSTUDIO_BASE_URL`): paid jobs, ledgered by the flow."""

    provider_name: ClassVar[ProviderName] = "maxstudio"

    api_key: str | None = Field(default=None, description="MaxStudio API key (from MAXSTUDIO_API_KEY)")
    base_url: str = Field(default=DEFAULT_BASE_URL, description="MaxStudio API root")
    connect_timeout_s: float = Field(default=10.0, gt=0)
    read_timeout_s: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=6, ge=1, le=20, description="tries per request on 429/5xx/connect errors")
    retry_base_delay_s: float = Field(default=0.5, ge=0)
    retry_max_delay_s: float = Field(default=30.0, ge=0)
    poll_first_s: float = Field(default=1.0, ge=0, description="wait before a job's first poll")
    poll_interval_s: float = Field(default=0.25, gt=0, description="then poll this often, growing 1.5x")
    poll_max_interval_s: float = Field(default=5.0, gt=0)
    job_timeout_s: float = Field(default=600.0, gt=0, description="give up polling a job after this long")

    def check_ready(self, storage: StorageResource) -> None:
        """No key, or storage MaxStudio cannot fetch from: raised before any call."""
        require_credential(self.api_key, API_KEY_ENV, SERVICE)
        if storage.is_local:
            raise StorageNotReachableError(
                f"{SERVICE} fetches the photos by URL, but storage is local ({storage.url}); set "
                "MODELCREW_STORAGE_URL=s3://bucket/prefix for live runs, or MODELCREW_DRY_RUN=1 to swap locally"
            )

    @asynccontextmanager
    async def swaps(self, storage: StorageResource, face: SwapInput) -> AsyncIterator[SwapProvider]:
        async with self.client() as client:
            yield MaxStudioSwaps(client, storage)

    def client(self, transport: httpx.AsyncBaseTransport | None = None) -> MaxStudioClient:
        key = require_credential(self.api_key, API_KEY_ENV, SERVICE)
        api = JsonApiClient(
            SERVICE,
            self.base_url,
            {"x-api-key": key},
            max_concurrency=self.max_concurrency,
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
            policy=RetryPolicy(self.max_attempts, self.retry_base_delay_s, self.retry_max_delay_s),
            transport=transport,
        )
        schedule = PollSchedule(
            self.poll_first_s, self.poll_interval_s, 1.5, self.poll_max_interval_s, self.job_timeout_s
        )
        return MaxStudioClient(api, schedule)


class MaxStudioSwaps:
    """Live swaps. MaxStudio fetches the photos itself, through presigned URLs that are never logged."""

    name = "maxstudio"
    simulated = False

    def __init__(self, client: MaxStudioClient, storage: StorageResource):
        self.client = client
        self.storage = storage

    async def detect(self, target: SwapInput) -> list[FaceBox]:
        with _neutral_errors("request"):
            boxes = await self.client.detect_faces(self.storage.presigned_get_url(target.key))
        return sorted(boxes, key=lambda box: box.area, reverse=True)

    async def create_swap(self, target: SwapInput, face: SwapInput, boxes: Sequence[FaceBox]) -> str:
        with _neutral_errors("create"):
            return await self.client.create_swap(
                self.storage.presigned_get_url(target.key), boxes, self.storage.presigned_get_url(face.key)
            )

    async def finish_swap(self, job_id: str, target: SwapInput, face: SwapInput, boxes: Sequence[FaceBox]) -> bytes:
        with _neutral_errors("result"):
            return await self.client.download(await self.client.wait_for_swap(job_id))

    async def create_enhance(self, image: bytes) -> str:
        with _neutral_errors("create"):
            return await self.client.create_enhance(image)

    async def finish_enhance(self, job_id: str, image: bytes) -> bytes:
        with _neutral_errors("result"):
            return await self.client.wait_for_enhance(job_id)


@contextmanager
def _neutral_errors(call: Literal["request", "create", "result"]) -> Iterator[None]:
    """MaxStudio's failures as the flow knows them: an unanswered create is ambiguous (it may have been
    billed), and a job's result that answers 404/410 is gone for good."""
    try:
        yield
    except ApiError as error:
        if isinstance(error, JobFailedError):
            raise SwapJobFailedError(str(error)) from error
        if isinstance(error, AmbiguousRequestError) and call == "create":
            raise AmbiguousCreateError(str(error)) from error
        if call == "result" and error.status in _RESULT_GONE:
            raise ResultGoneError(str(error)) from error
        raise SwapProviderError(str(error)) from error
