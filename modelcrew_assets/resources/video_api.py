"""What the two live image-to-video providers (Runway, fal) share: the HTTP settings on the resource, the
shared JSON API client, the still as a data URI, and HTTP errors turned into the stage's neutral ones."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Literal

from pydantic import Field

from modelcrew_assets.generated_reels.providers import (
    AmbiguousVideoCreateError,
    VideoProviderError,
    VideoResultGoneError,
    VideoServiceResource,
)
from modelcrew_assets.resources.http_api import AmbiguousRequestError, ApiError, JsonApiClient, RetryPolicy

# Answers of an output URL that has expired or been withdrawn (CloudFront answers 403 to an expired token).
RESULT_GONE = (403, 404, 410)


class HttpVideoServiceResource(VideoServiceResource):
    """A live provider behind the shared JSON API client; the retry settings have their usual names."""

    connect_timeout_s: float = Field(default=10.0, gt=0)
    read_timeout_s: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=6, ge=1, le=20, description="tries per request on 429/503/connect errors")
    retry_base_delay_s: float = Field(default=0.5, ge=0)
    retry_max_delay_s: float = Field(default=30.0, ge=0)

    def api(self, service: str, base_url: str, headers: Mapping[str, str]) -> JsonApiClient:
        return JsonApiClient(
            service,
            base_url,
            headers,
            max_concurrency=self.max_concurrency,
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
            policy=RetryPolicy(self.max_attempts, self.retry_base_delay_s, self.retry_max_delay_s),
        )


def jpeg_data_uri(jpeg: bytes, still_key: str, limit_bytes: int, service: str) -> str:
    """The still inline, for providers that cannot fetch a presigned URL (Runway HEADs it first)."""
    uri = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
    if len(uri) > limit_bytes:
        raise VideoProviderError(
            f"{service}: the still {still_key} is {len(uri) / 1e6:.1f} MB as a data URI, over the "
            f"{limit_bytes / 1e6:.0f} MB limit; it should have been shrunk to 720x1280 first"
        )
    return uri


@contextmanager
def neutral_errors(call: Literal["create", "poll", "download"]) -> Iterator[None]:
    """The shared client's errors as the stage knows them: an unanswered create is ambiguous (it may have
    been billed) and an output URL that answers 403/404/410 has expired."""
    try:
        yield
    except AmbiguousRequestError as error:
        if call == "create":
            raise AmbiguousVideoCreateError(str(error)) from None
        raise VideoProviderError(str(error)) from None
    except ApiError as error:
        if call == "download" and error.status in RESULT_GONE:
            raise VideoResultGoneError(str(error)) from None
        raise VideoProviderError(str(error)) from None
