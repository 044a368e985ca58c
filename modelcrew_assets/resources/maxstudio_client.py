"""MaxStudioClient: the MaxStudio face-swap API (detect, swap, enhance) over the shared JSON API client.

The key travels only in the `x-api-key` header. Requests, retries and the ambiguous-POST rule live in
`http_api.py`; this module adds the endpoints, answer validation and the poll loop. The resource that
builds a client, and turns it into a swap provider, is maxstudio.py.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelcrew_assets.face_detection import FaceBox
from modelcrew_assets.resources.http_api import ApiError, JsonApiClient

SERVICE = "MaxStudio"
_URL = re.compile(r"https?://[^\s'\"]+")
_PENDING_HINT = "the job may still finish: a rerun polls it again instead of paying for a new one"


class JobFailedError(ApiError):
    """The provider finished a job as failed; the message carries its reason."""


class JobTimeoutError(ApiError):
    """A job was still not finished when the overall job timeout ran out."""


@dataclass(frozen=True)
class PollSchedule:
    """Wait `first_s` (about one typical job) before the first poll, then poll every `interval_s`,
    growing by `growth` up to `max_interval_s`, until `timeout_s` has passed since the job started."""

    first_s: float = 1.0
    interval_s: float = 0.25
    growth: float = 1.5
    max_interval_s: float = 5.0
    timeout_s: float = 600.0


class MaxStudioClient:
    """One open connection pool to MaxStudio. Use as `async with resource.client() as api:`."""

    def __init__(self, api: JsonApiClient, schedule: PollSchedule):
        self.api = api
        self.schedule = schedule

    async def __aenter__(self) -> MaxStudioClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.api.__aexit__(*exc_info)

    async def detect_faces(self, image_url: str) -> list[FaceBox]:
        # Detection creates no job, so a retry after an ambiguous failure cannot bill a second job.
        answer = await self.api.call("POST", "/detect-face-image", json={"imageUrl": image_url}, idempotent=True)
        what = f"{SERVICE} POST /detect-face-image"
        faces = _field(answer, what, "detectedFaces", "faces")
        if not isinstance(faces, list):
            raise ApiError(f"{what}: 'detectedFaces' is not a list: {_describe(faces)}")
        return [_box(face, what) for face in faces]

    async def create_swap(self, media_url: str, faces: Sequence[FaceBox], new_face_url: str) -> str:
        body = {
            "mediaUrl": media_url,
            "faces": [{"originalFace": _box_json(box), "newFace": new_face_url} for box in faces],
        }
        answer = await self.api.call("POST", "/swap-image", json=body, idempotent=False)
        return _job_id(answer, f"{SERVICE} POST /swap-image")

    async def wait_for_swap(self, job_id: str) -> str:
        """Poll until the swap job is done; returns the result's media URL (do not log it)."""
        answer = await self._wait("/swap-image", job_id)
        result = answer.get("result")
        media_url = result.get("mediaUrl") if isinstance(result, dict) else None
        if not isinstance(media_url, str) or not media_url.startswith(("http://", "https://")):
            raise ApiError(f"{SERVICE} swap job {job_id}: completed without a result.mediaUrl")
        return media_url

    async def download(self, url: str) -> bytes:
        return await self.api.download(url)

    async def create_enhance(self, image: bytes) -> str:
        body = {"image": base64.b64encode(image).decode("ascii")}
        answer = await self.api.call("POST", "/image-enhancer", json=body, idempotent=False)
        return _job_id(answer, f"{SERVICE} POST /image-enhancer")

    async def wait_for_enhance(self, job_id: str) -> bytes:
        answer = await self._wait("/image-enhancer", job_id)
        result = answer.get("result")
        if not isinstance(result, str) or not result:
            raise ApiError(f"{SERVICE} enhance job {job_id}: completed without a base64 result")
        try:
            return base64.b64decode(result, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(f"{SERVICE} enhance job {job_id}: result is not valid base64") from None

    async def _wait(self, path: str, job_id: str) -> dict[str, Any]:
        schedule = self.schedule
        deadline = time.monotonic() + schedule.timeout_s
        delay, interval, last_status = schedule.first_s, schedule.interval_s, "(not polled yet)"
        while True:
            await asyncio.sleep(max(0.0, min(delay, deadline - time.monotonic())))
            what = f"{SERVICE} GET {path}/{job_id}"
            answer = await self.api.call("GET", f"{path}/{job_id}")
            if not isinstance(answer, dict):
                raise ApiError(f"{what}: answer is not a JSON object: {_describe(answer)}")
            status = answer.get("status")
            if status == "completed":
                return answer
            if status == "failed":
                raise JobFailedError(f"{SERVICE} job {job_id} failed: {_reason(answer)}")
            last_status = repr(status)
            if time.monotonic() >= deadline:
                raise JobTimeoutError(
                    f"{SERVICE} job {job_id}: not finished after {schedule.timeout_s:.0f}s "
                    f"(last status {last_status}); {_PENDING_HINT}"
                )
            delay, interval = interval, min(schedule.max_interval_s, interval * schedule.growth)


def _field(answer: Any, what: str, *names: str) -> Any:
    if isinstance(answer, dict):
        for name in names:
            if name in answer:
                return answer[name]
    raise ApiError(f"{what}: answer has no {' or '.join(repr(n) for n in names)}: {_describe(answer)}")


def _job_id(answer: Any, what: str) -> str:
    job_id = _field(answer, what, "jobId")
    if not isinstance(job_id, (str, int)) or isinstance(job_id, bool) or not str(job_id).strip():
        raise ApiError(f"{what}: 'jobId' is not a usable id: {_describe(job_id)}")
    return str(job_id)


def _box(face: Any, what: str) -> FaceBox:
    try:
        values = [int(face[name]) for name in ("x", "y", "width", "height")]
    except (TypeError, KeyError, ValueError):
        raise ApiError(f"{what}: a face is not {{x, y, width, height}}: {_describe(face)}") from None
    if values[2] <= 0 or values[3] <= 0:
        raise ApiError(f"{what}: a face has no area: {_describe(face)}")
    return FaceBox(*values)


def _box_json(box: FaceBox) -> dict[str, int]:
    return {"x": box.x, "y": box.y, "width": box.width, "height": box.height}


def _reason(answer: dict[str, Any]) -> str:
    for name in ("error", "message", "reason", "detail"):
        if isinstance(answer.get(name), str) and answer[name].strip():
            return answer[name].strip()[:300]
    return "the provider gave no reason"


def _describe(value: Any) -> str:
    # Answers can echo presigned URLs (sensitive), so URLs are masked before a message is built.
    text = _URL.sub("<url>", repr(value))
    return text if len(text) <= 200 else text[:200] + "..."
