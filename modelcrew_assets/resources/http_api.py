"""A JSON-over-HTTP client shared by every paid API (MaxStudio, the captioner): bounded concurrency,
timeouts, and retries that never risk paying twice.

Retry rule, in one place:
- 429 and 503 answers are retried with exponential backoff and full jitter (Retry-After honoured): the
  server refused the request before doing anything. Other 5xx answers (500, 502, 504) are retried the same
  way for idempotent calls; for a non-idempotent one the work may have been done before the error (a gateway
  timing out on a backend that went on, a crash after the commit), so they raise `AmbiguousRequestError`.
- Failures before the request was sent (connect error/timeout, pool timeout) are retried for every method.
- Failures after the request may have reached the server (read timeout, dropped connection) are retried
  only for idempotent calls (`idempotent=True`, the default for GET). For a POST that creates paid work
  they raise `AmbiguousRequestError`: the caller records it and decides; it is never retried blindly.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from dagster import get_dagster_logger

_UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Answers that say the server did nothing with the request: always safe to send again after a pause.
_REFUSED = (429, 503)
_MAYBE_SENT = (httpx.ReadTimeout, httpx.WriteTimeout, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


class ApiError(RuntimeError):
    """A call that failed for good; the message names the service, method and path, never a secret."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class AmbiguousRequestError(ApiError):
    """A non-idempotent request may have reached the server: retrying could create (and bill) twice."""


class MalformedAnswerError(ApiError):
    """The server answered 2xx with a body that is not JSON; the caller decides whether asking again helps."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Full-jitter exponential backoff; a server's Retry-After is a floor, not a suggestion."""
        backoff = random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2**attempt))
        return max(backoff, retry_after_s or 0.0)


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _secrets_in(headers: Mapping[str, str]) -> list[str]:
    """What an error snippet must never show: every header value, and the bare credential after a scheme
    ("Bearer <key>", "Key <key>"), which a service may echo on its own; longest first."""
    found = {value for value in headers.values() if value}
    found |= {value.split()[-1] for value in found if len(value.split()) == 2 and len(value.split()[-1]) >= 8}
    return sorted(found, key=len, reverse=True)


class JsonApiClient:
    """Async client for one service. Use as `async with JsonApiClient(...) as api: await api.call(...)`."""

    def __init__(
        self,
        service: str,
        base_url: str,
        headers: Mapping[str, str],
        *,
        max_concurrency: int = 4,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 60.0,
        policy: RetryPolicy = RetryPolicy(),
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.service = service
        self.policy = policy
        self._secrets = _secrets_in(headers)
        self._limit = asyncio.Semaphore(max_concurrency)
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=dict(headers),
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency),
            transport=transport,
            follow_redirects=False,
        )
        self._anonymous = httpx.AsyncClient(
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=max_concurrency),
            transport=transport,
            follow_redirects=True,
        )
        self.log = get_dagster_logger()

    async def __aenter__(self) -> JsonApiClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._client.aclose()
        await self._anonymous.aclose()

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        idempotent: bool | None = None,
        expect_json: bool = True,
        label: str | None = None,
    ) -> Any:
        """Send one request and return its parsed JSON body (None when `expect_json` is off), retrying
        only where that is safe. `label` replaces the path in logs and errors when the path is secret."""
        idempotent = method.upper() in ("GET", "HEAD") if idempotent is None else idempotent
        what = f"{self.service} {method.upper()} {label or path}"
        response = await self._send(what, idempotent, lambda: self._client.request(method, path, json=json))
        if not expect_json:
            return None
        try:
            return response.json()
        except ValueError:
            raise MalformedAnswerError(f"{what}: answer is not JSON: {self._snippet(response)}") from None

    async def download(self, url: str) -> bytes:
        """GET an absolute result URL with the same retries. It goes to another host, so it carries none
        of this client's credentials, and the URL (often presigned) is never logged."""
        what = f"{self.service} result download"
        response = await self._send(what, True, lambda: self._anonymous.get(url))
        return response.content

    async def _send(self, what: str, idempotent: bool, send: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
        for attempt in range(self.policy.max_attempts):
            last_try = attempt == self.policy.max_attempts - 1
            try:
                async with self._limit:
                    response = await send()
            except _UNSENT as error:
                if last_try:
                    raise ApiError(f"{what}: could not connect ({type(error).__name__})") from None
                await self._backoff(what, attempt, type(error).__name__)
                continue
            except _MAYBE_SENT as error:
                if not idempotent:
                    raise AmbiguousRequestError(
                        f"{what}: {type(error).__name__} after the request was sent; it may have been "
                        "accepted, so it is not retried automatically"
                    ) from None
                if last_try:
                    raise ApiError(f"{what}: {type(error).__name__} on every attempt") from None
                await self._backoff(what, attempt, type(error).__name__)
                continue
            if response.status_code >= 500 and response.status_code not in _REFUSED and not idempotent:
                raise AmbiguousRequestError(
                    f"{what}: HTTP {response.status_code} after the request was sent; it may have been accepted, "
                    f"so it is not retried automatically: {self._snippet(response)}",
                    response.status_code,
                )
            if response.status_code in _REFUSED or response.status_code >= 500:
                if last_try:
                    raise ApiError(
                        f"{what}: HTTP {response.status_code} after {attempt + 1} attempts: {self._snippet(response)}",
                        response.status_code,
                    )
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                await self._backoff(what, attempt, f"HTTP {response.status_code}", retry_after)
                continue
            if response.status_code >= 400:
                raise ApiError(f"{what}: HTTP {response.status_code}: {self._snippet(response)}", response.status_code)
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _backoff(self, what: str, attempt: int, reason: str, retry_after_s: float | None = None) -> None:
        delay = self.policy.delay(attempt, retry_after_s)
        self.log.info(f"{what}: {reason}; retry {attempt + 1} in {delay:.1f}s")
        await asyncio.sleep(delay)

    def _snippet(self, response: httpx.Response) -> str:
        text = response.text[:200].replace("\n", " ")
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text or "(empty body)"
