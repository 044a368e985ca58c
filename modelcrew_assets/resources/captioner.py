"""CaptionerResource: any OpenAI-compatible chat-completions endpoint with image input (hosted APIs, vLLM,
Ollama). HTTP goes through the shared JsonApiClient: bounded concurrency, timeouts, 429/5xx backoff."""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Any

import dagster as dg
from PIL import Image
from pydantic import Field

from modelcrew_assets.imaging import decode_image, encode_jpeg
from modelcrew_assets.resources.http_api import ApiError, JsonApiClient, MalformedAnswerError, RetryPolicy
from modelcrew_assets.settings import require_credential

COMPLETIONS_PATH = "/chat/completions"
EXIF_ORIENTATION = 0x0112


class CaptionerResource(dg.ConfigurableResource):
    """Writes one caption per image. Used only when an endpoint is configured and not in dry-run; otherwise
    the captions stage falls back to template captions and never calls out."""

    base_url: str | None = Field(
        default=None, description="CAPTION_API_BASE_URL, up to /v1 (e.g. http://localhost:11434/v1)"
    )
    api_key: str | None = Field(default=None, description="CAPTION_API_KEY; local servers may need none")
    model: str | None = Field(default=None, description="CAPTION_MODEL: the vision model to ask")
    dry_run: bool = False
    max_concurrency: int = Field(default=8, ge=1, le=64)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    read_timeout_s: float = Field(default=120.0, gt=0)
    max_attempts: int = Field(default=6, ge=1, description="tries per request on 429/5xx/connect errors")
    retry_base_delay_s: float = Field(default=0.5, ge=0)
    retry_max_delay_s: float = Field(default=30.0, ge=0)
    bad_answer_attempts: int = Field(default=3, ge=1, description="tries per image when the answer is unusable")
    max_answer_tokens: int = Field(default=200, ge=16)
    image_max_side: int = Field(default=1024, ge=64, description="images are downscaled to this before sending")

    @property
    def enabled(self) -> bool:
        """Captions come from the endpoint only when one is configured and this is not a dry run."""
        return not self.dry_run and bool(self.base_url)

    def model_name(self) -> str:
        return require_credential(self.model, "CAPTION_MODEL", "the captioner (CAPTION_API_BASE_URL is set)")

    def session(self) -> CaptionSession:
        """An async session for one batch: `async with captioner.session() as s: await s.caption(...)`."""
        if not self.enabled:
            raise RuntimeError(
                "the captioner is not enabled (dry-run, or CAPTION_API_BASE_URL unset); use template captions"
            )
        model = self.model_name()
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
        return CaptionSession(
            api, model, self.max_answer_tokens, self.image_max_side, self.bad_answer_attempts
        )


class CaptionSession:
    def __init__(
        self, api: JsonApiClient, model: str, max_tokens: int, image_max_side: int, bad_answer_attempts: int
    ):
        self.api = api
        self.model = model
        self.max_tokens = max_tokens
        self.image_max_side = image_max_side
        self.bad_answer_attempts = bad_answer_attempts

    async def __aenter__(self) -> CaptionSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.api.__aexit__(*exc_info)

    async def caption(self, image: bytes, name: str, system: str, instruction: str) -> str:
        """The model's raw caption for one image. A caption request creates nothing that persists, so a
        repeat after a timeout costs at most one more caption: it is sent as idempotent."""
        data_uri = await asyncio.to_thread(self._data_uri, image, name)
        body = self._request(data_uri, system, instruction)
        for attempt in range(self.bad_answer_attempts):
            try:
                return _answer_text(await self.api.call("POST", COMPLETIONS_PATH, json=body, idempotent=True))
            except MalformedAnswerError as error:
                if attempt == self.bad_answer_attempts - 1:
                    raise ApiError(f"{name}: no usable caption after {attempt + 1} answers; last: {error}") from None
                delay = self.api.policy.delay(attempt)
                self.api.log.info(f"captioner: unusable answer for {name}; asking again in {delay:.1f}s")
                await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

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
            "max_tokens": self.max_tokens,
            "temperature": 0.2,
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
