"""CaptionerResource: any OpenAI-compatible chat-completions endpoint with image input (hosted APIs, vLLM,
Ollama). HTTP goes through the shared JsonApiClient: bounded concurrency, timeouts, 429/5xx backoff.

OpenAI's reasoning models (o-series, gpt-5) answer HTTP 400 to `max_tokens` ("unsupported_parameter", use
`max_completion_tokens`) and to a temperature other than 1 ("unsupported_value"), and spend completion
tokens on reasoning before the caption. `token_parameter="max_completion_tokens"` sends what they take,
with `reasoning_tokens` more room; left at `max_tokens` (vLLM, Ollama), a 400 naming one of those two
parameters switches it for the rest of the session, every concurrent request included, and the request
is sent again: once per parameter, so a 400 never loops."""

from __future__ import annotations

import abc
import asyncio
import base64
import io
import re
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from PIL import Image
from pydantic import Field

from modelcrew_assets.imaging import decode_image, encode_jpeg
from modelcrew_assets.resources.http_api import ApiError, JsonApiClient, MalformedAnswerError, RetryPolicy
from modelcrew_assets.resources.service import ServiceResource
from modelcrew_assets.settings import require_credential

COMPLETIONS_PATH = "/chat/completions"
EXIF_ORIENTATION = 0x0112
TEMPERATURE = 0.2
# OpenAI's 400 body starts with its message, e.g. "Unsupported parameter: 'max_tokens' is not supported with
# this model..." or "Unsupported value: 'temperature' does not support 0.2 ..."; ApiError keeps its start.
_UNSUPPORTED = re.compile(r"Unsupported (?:parameter|value): '(\w+)'")


class CaptionServiceResource(ServiceResource):
    """Where the captions stage gets captions: a vision model when `enabled` (through `session()`), else
    every image without a hand caption gets a template caption. Subclasses: CaptionerResource (live),
    SimulatedCaptionerResource (dry run)."""

    @property
    @abc.abstractmethod
    def enabled(self) -> bool:
        """Whether a model writes the captions; only then may `session()` be called."""

    @property
    def caption_model(self) -> str | None:
        """The model named in the run's metadata; None when the captions are templates."""
        return None

    def template_warning(self) -> str | None:
        """Why a run gets template captions when that is a gap in the setup a person should hear about."""
        return None

    @abc.abstractmethod
    def session(self) -> CaptionSession:
        """An async session for one batch: `async with captioner.session() as s: await s.caption(...)`."""


class SimulatedCaptionerResource(CaptionServiceResource):
    """Asks no model: template captions (hand captions still win), free, labelled dry_run."""

    simulated: ClassVar[bool] = True

    @property
    def enabled(self) -> bool:
        return False

    def session(self) -> CaptionSession:
        raise RuntimeError("the simulated captioner is not enabled: it asks no model; use template captions")


class CaptionerResource(CaptionServiceResource):
    """Writes one caption per image through the configured endpoint; without one (CAPTION_API_BASE_URL
    unset) the captions stage falls back to template captions and never calls out."""

    base_url: str | None = Field(
        default=None, description="CAPTION_API_BASE_URL, up to /v1 (e.g. http://localhost:11434/v1)"
    )
    api_key: str | None = Field(default=None, description="CAPTION_API_KEY; local servers may need none")
    model: str | None = Field(default=None, description="CAPTION_MODEL: the vision model to ask")
    max_concurrency: int = Field(default=8, ge=1, le=64)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    read_timeout_s: float = Field(default=120.0, gt=0)
    max_attempts: int = Field(default=6, ge=1, description="tries per request on 429/5xx/connect errors")
    retry_base_delay_s: float = Field(default=0.5, ge=0)
    retry_max_delay_s: float = Field(default=30.0, ge=0)
    bad_answer_attempts: int = Field(default=3, ge=1, description="tries per image when the answer is unusable")
    max_answer_tokens: int = Field(default=200, ge=16, description="the caption's own token budget")
    token_parameter: Literal["max_tokens", "max_completion_tokens"] = Field(
        default="max_tokens",
        description="CAPTION_TOKEN_PARAMETER: max_completion_tokens for OpenAI's o-series / gpt-5 models",
    )
    reasoning_tokens: int = Field(
        default=2048, ge=0, description="added to max_completion_tokens: what a reasoning model may think first"
    )
    image_max_side: int = Field(default=1024, ge=64, description="images are downscaled to this before sending")

    @property
    def enabled(self) -> bool:
        """Captions come from the endpoint only when one is configured."""
        return bool(self.base_url)

    @property
    def caption_model(self) -> str | None:
        return self.model if self.enabled else None

    def template_warning(self) -> str | None:
        if self.enabled:
            return None
        return (
            "captions: CAPTION_API_BASE_URL is not set, so every image without a hand caption gets a template "
            "caption; set CAPTION_API_BASE_URL and CAPTION_MODEL (and CAPTION_API_KEY for hosted APIs)"
        )

    def session(self) -> CaptionSession:
        if not self.enabled:
            raise RuntimeError("the captioner is not enabled (CAPTION_API_BASE_URL unset); use template captions")
        model = require_credential(self.model, "CAPTION_MODEL", "the captioner (CAPTION_API_BASE_URL is set)")
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        policy = RetryPolicy(self.max_attempts, self.retry_base_delay_s, self.retry_max_delay_s)
        api = JsonApiClient(
            "captioner",
            str(self.base_url),
            headers,
            max_concurrency=self.max_concurrency,
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
            policy=policy,
        )
        limits = RequestLimits(self.token_parameter, self.max_answer_tokens, self.reasoning_tokens)
        return CaptionSession(api, model, limits, self.image_max_side, self.bad_answer_attempts, self.max_concurrency)


class RequestLimits:
    """The token-limit and temperature parameters this endpoint takes, learnt from its 400s (shared by
    every request of a session)."""

    def __init__(self, token_parameter: str, answer_tokens: int, reasoning_tokens: int):
        self.token_parameter = token_parameter
        self.answer_tokens = answer_tokens
        self.reasoning_tokens = reasoning_tokens
        self.temperature: float | None = None if token_parameter == "max_completion_tokens" else TEMPERATURE
        # The session's first request goes alone, so the others are built with what it learnt.
        self.first_sent = False
        self.first_done = asyncio.Event()

    def parameters(self) -> dict[str, Any]:
        if self.token_parameter == "max_completion_tokens":
            limit = {"max_completion_tokens": self.answer_tokens + self.reasoning_tokens}
        else:
            limit = {"max_tokens": self.answer_tokens}
        return limit | ({"temperature": self.temperature} if self.temperature is not None else {})

    def adapt(self, error: ApiError, sent: dict[str, Any], log) -> bool:
        """After a 400: True when the request should be sent again with `parameters()` now."""
        found = _UNSUPPORTED.search(str(error)) if error.status == 400 else None
        name = found.group(1) if found else None
        if name not in ("max_tokens", "temperature") or name not in sent:
            return False
        if name == "max_tokens" and self.token_parameter == "max_tokens":
            self.token_parameter = "max_completion_tokens"
            log.warning("captioner: the model does not take max_tokens; sending max_completion_tokens from now on")
        elif name == "temperature" and self.temperature is not None:
            self.temperature = None
            log.warning("captioner: the model takes only its default temperature; sending none from now on")
        return True  # adapted now, or by a concurrent request whose 400 came back first


class CaptionSession:
    def __init__(
        self,
        api: JsonApiClient,
        model: str,
        limits: RequestLimits,
        image_max_side: int,
        bad_answer_attempts: int,
        max_concurrency: int,
    ):
        self.api = api
        self.model = model
        self.limits = limits
        self.image_max_side = image_max_side
        self.bad_answer_attempts = bad_answer_attempts
        self.max_concurrency = max_concurrency  # requests in flight at once

    async def __aenter__(self) -> CaptionSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.api.__aexit__(*exc_info)

    async def caption(self, image: bytes, name: str, system: str, instruction: str) -> str:
        """The model's raw caption for one image. A caption request creates nothing that persists, so a
        repeat after a timeout costs at most one more caption: it is sent as idempotent."""
        data_uri = await asyncio.to_thread(self._data_uri, image, name)
        for attempt in range(self.bad_answer_attempts):
            try:
                return _answer_text(await self._send(lambda: self._request(data_uri, system, instruction)))
            except MalformedAnswerError as error:
                if attempt == self.bad_answer_attempts - 1:
                    raise ApiError(f"{name}: no usable caption after {attempt + 1} answers; last: {error}") from None
                delay = self.api.policy.delay(attempt)
                self.api.log.info(f"captioner: unusable answer for {name}; asking again in {delay:.1f}s")
                await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _send(self, request: Callable[[], dict[str, Any]]) -> Any:
        if self.limits.first_sent:
            await self.limits.first_done.wait()
            return await self._send_adapting(request())
        self.limits.first_sent = True
        try:
            return await self._send_adapting(request())
        finally:
            self.limits.first_done.set()

    async def _send_adapting(self, body: dict[str, Any]) -> Any:
        """POST, sent again after a 400 for each parameter the model does not take (at most once each)."""
        for _ in range(3):
            try:
                return await self.api.call("POST", COMPLETIONS_PATH, json=body, idempotent=True)
            except ApiError as error:
                if isinstance(error, MalformedAnswerError) or not self.limits.adapt(error, body, self.api.log):
                    raise
            body = {
                key: value
                for key, value in body.items()
                if key not in ("max_tokens", "max_completion_tokens", "temperature")
            }
            body |= self.limits.parameters()
        return await self.api.call("POST", COMPLETIONS_PATH, json=body, idempotent=True)

    def _data_uri(self, image: bytes, name: str) -> str:
        """The image as a JPEG data URI. An upright JPEG already small enough is sent as it is (the common
        case: swapped_faces writes such JPEGs); anything else is decoded, turned upright, downscaled and
        re-encoded, which costs far more CPU than the request itself."""
        if not _sendable_as_is(image, self.image_max_side):
            picture = decode_image(image, name)
            picture.thumbnail((self.image_max_side, self.image_max_side))  # shrinks only, keeps aspect
            image = encode_jpeg(picture, quality=88)
        return "data:image/jpeg;base64," + base64.b64encode(image).decode("ascii")

    def _request(self, data_uri: str, system: str, instruction: str) -> dict[str, Any]:
        return {
            "model": self.model,
            **self.limits.parameters(),
            "messages": [
                {"role": "system", "content": system},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": instruction},
                        {"type": "image_url", "image_url": {"url": data_uri}},
                    ],
                },
            ],
        }


def _sendable_as_is(image: bytes, max_side: int) -> bool:
    """A baseline-readable RGB JPEG within the size limit and without an EXIF rotation (header only)."""
    try:
        with Image.open(io.BytesIO(image)) as header:
            return (
                header.format == "JPEG"
                and header.mode == "RGB"
                and max(header.size) <= max_side
                and header.getexif().get(EXIF_ORIENTATION, 1) == 1
            )
    except (OSError, SyntaxError, ValueError):
        return False


def _answer_text(answer: Any) -> str:
    """choices[0].message.content as text (a string, or a list of text parts on some servers)."""
    try:
        content = answer["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise MalformedAnswerError(f"answer has no choices[0].message.content: {str(answer)[:200]}") from None
    if isinstance(content, list):
        content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    if not isinstance(content, str) or not content.strip():
        raise MalformedAnswerError("answer's message content is empty")
    return content
