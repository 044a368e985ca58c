"""A fake fal queue: real HTTP on 127.0.0.1, answering as fal's queue docs describe.

`POST /{model id}` with `Authorization: Key <key>` -> {request_id, status_url, response_url, cancel_url}, the
URLs naming the model's app without its endpoint path; fal fetches `image_url` itself (a data URI, or an
http(s) URL it GETs: a presigned S3 URL works), and a still it cannot fetch fails the request as
`image_load_error`. `GET /{owner}/{app}/requests/{id}/status` walks IN_QUEUE, IN_PROGRESS, COMPLETED (a
scripted failure is COMPLETED with `error` and `error_type`); `GET .../requests/{id}` gives `{video: {url}}`,
or 422 with `detail` for a failed request. Faults per submit: rate_limited (429).
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import httpx
import pytest

from modelcrew_assets.generated_reels.ffmpeg import zoom_clip
from modelcrew_assets_tests.fakes.loopback import LoopbackServer, send, send_json

FAKE_FAL_KEY = "fal-test-key-7d2e91"
STATUSES = ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")


@dataclass
class FakeRequest:
    id: str
    model: str
    body: dict
    still: bytes | None
    error_type: str | None
    polls: int = 0

    @property
    def status(self) -> str:
        return STATUSES[min(self.polls, len(STATUSES)) - 1] if self.polls else "IN_QUEUE"


@dataclass
class FakeFal:
    key: str = FAKE_FAL_KEY
    submitted: list[FakeRequest] = field(default_factory=list)
    submit_faults: deque = field(default_factory=deque)
    failures: deque = field(default_factory=deque)  # error_type per submitted request; None: success

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._http = LoopbackServer(_handler_for(self))

    @property
    def url(self) -> str:
        return self._http.url

    def stop(self) -> None:
        self._http.stop()

    def submit(self, model: str, body: dict) -> dict:
        still = _fetch(str(body.get("image_url", "")))
        with self._lock:
            error = self.failures.popleft() if self.failures else None
            request = FakeRequest(
                f"req-{next(self._ids):04d}", model, body, still, error or (None if still else "image_load_error")
            )
            self.submitted.append(request)
        base = f"{self.url}/{'/'.join(model.split('/')[:2])}/requests/{request.id}"
        return {
            "request_id": request.id,
            "status_url": f"{base}/status",
            "response_url": base,
            "cancel_url": f"{base}/cancel",
        }

    def status(self, request: FakeRequest) -> dict:
        request.polls += 1
        answer: dict = {"status": request.status, "request_id": request.id}
        if request.status == "COMPLETED" and request.error_type:
            answer.update(error="The request failed", error_type=request.error_type)
        return answer

    def video(self, request: FakeRequest) -> bytes:
        return zoom_clip(request.still or b"", int(request.body.get("duration", "5")), (180, 320))


def _fetch(image_url: str) -> bytes | None:
    if image_url.startswith("data:"):
        return base64.b64decode(image_url.split(",", 1)[1])
    try:
        response = httpx.get(image_url, timeout=5)
    except httpx.HTTPError:
        return None
    return response.content if response.status_code == 200 else None


def _handler_for(fake: FakeFal) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            if self.headers.get("Authorization") != f"Key {fake.key}":
                return send_json(self, 401, {"detail": "Unauthorized"})
            with fake._lock:
                fault = fake.submit_faults.popleft() if fake.submit_faults else None
            if fault == "rate_limited":
                return send_json(self, 429, {"detail": "Too many requests"})
            return send_json(self, 200, fake.submit(self.path.strip("/"), body))

        def do_GET(self) -> None:
            if self.path.startswith("/files/"):
                request = next(r for r in fake.submitted if self.path == f"/files/{r.id}.mp4")
                return send(self, 200, fake.video(request), "video/mp4")
            if self.headers.get("Authorization") != f"Key {fake.key}":
                return send_json(self, 401, {"detail": "Unauthorized"})
            parts = self.path.strip("/").split("/")
            wants_status = parts[-1] == "status"
            request_id = parts[-2] if wants_status else parts[-1]
            request = next((r for r in fake.submitted if r.id == request_id), None)
            if (
                request is None
                or "/".join(parts[:2]) != "/".join(request.model.split("/")[:2])
                or parts[2] != "requests"
            ):
                return send_json(self, 404, {"detail": "Request not found"})
            if wants_status:
                return send_json(self, 200, fake.status(request))
            if request.error_type:
                return send_json(self, 422, {"detail": [{"msg": "The request failed", "type": request.error_type}]})
            return send_json(
                self, 200, {"video": {"url": f"{fake.url}/files/{request.id}.mp4", "content_type": "video/mp4"}}
            )

    return Handler


@pytest.fixture
def fake_fal() -> Iterator[FakeFal]:
    server = FakeFal()
    yield server
    server.stop()
