"""A fake Runway API: real HTTP on 127.0.0.1, answering as docs.dev.runwayml.com describes.

`POST /v1/image_to_video` needs `Authorization: Bearer <secret>` and `X-Runway-Version: 2024-11-06` (400
without); promptImage as a data URI (at most 5 MB, an image type) or an HTTPS URL that answers a HEAD with
200, an image Content-Type and a Content-Length, no redirect (so a presigned GET URL, which refuses HEAD,
fails as on the real API). `GET /v1/tasks/{id}` walks each task through its script (default PENDING,
THROTTLED, RUNNING, SUCCEEDED; a failure ends FAILED with a failureCode). Output URLs carry a token that
expires after `output_ttl_s` (403 afterwards, as CloudFront answers); each task read signs a fresh one.
Faults per create: rate_limited (429), answer_lost (the task is made, no answer), gateway_timeout (made, 504).
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import httpx
import pytest

from modelcrew_assets.generated_reels.ffmpeg import zoom_clip
from modelcrew_assets_tests.fakes.loopback import LoopbackServer, send, send_json

FAKE_RUNWAY_SECRET = "key_" + "0a1b2c3d" * 16
DEFAULT_SCRIPT = ("PENDING", "THROTTLED", "RUNNING", "SUCCEEDED")


@dataclass
class FakeTask:
    id: str
    body: dict
    script: deque
    status: str = "PENDING"
    failure_code: str | None = None
    polls: int = 0


@dataclass
class FakeRunway:
    secret: str = FAKE_RUNWAY_SECRET
    output_ttl_s: float = 60.0
    tasks: list[FakeTask] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)  # {"method", "path", "authorization", "version"}
    create_faults: deque = field(default_factory=deque)
    scripts: deque = field(default_factory=deque)  # per created task; DEFAULT_SCRIPT when empty
    answer_lost_s: float = 1.0
    expired_signatures: int = 0  # this many output URLs are signed already expired (a run that read them late)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._clips: dict[int, bytes] = {}
        self._http = LoopbackServer(_handler_for(self))

    @property
    def url(self) -> str:
        return self._http.url

    def stop(self) -> None:
        self._http.stop()

    def create(self, body: dict) -> tuple[int, dict]:
        problem = _prompt_image_problem(str(body.get("promptImage", "")))
        if problem:
            return 400, {"error": f"promptImage: {problem}"}
        with self._lock:
            script = deque(self.scripts.popleft() if self.scripts else DEFAULT_SCRIPT)
            task = FakeTask(f"task-{next(self._ids):04d}", body, script, script.popleft())
            self.tasks.append(task)
        return 200, {"id": task.id}

    def read(self, task_id: str) -> tuple[int, dict]:
        task = next((t for t in self.tasks if t.id == task_id), None)
        if task is None:
            return 404, {"error": "Task not found"}
        with self._lock:
            task.polls += 1
            if task.polls > 1 and task.script:
                step = task.script.popleft()
                task.status, task.failure_code = step if isinstance(step, tuple) else (step, None)
        answer: dict = {"id": task.id, "status": task.status, "createdAt": "2030-01-01T00:00:00.000Z"}
        if task.status == "SUCCEEDED":
            with self._lock:
                expired, self.expired_signatures = self.expired_signatures > 0, max(0, self.expired_signatures - 1)
            token = f"{task.id}|{time.time() + (-1.0 if expired else self.output_ttl_s):.3f}"
            answer["output"] = [f"{self.url}/outputs/{task.id}.mp4?_jwt={urllib.parse.quote(token)}"]
        if task.status == "FAILED":
            answer["failure"] = "The generation was rejected by content moderation."
            answer["failureCode"] = task.failure_code
        return 200, answer

    def output(self, path: str, query: str) -> tuple[int, bytes]:
        token = urllib.parse.parse_qs(query).get("_jwt", [""])[0]
        task_id, _, expires = token.partition("|")
        task = next((t for t in self.tasks if t.id == task_id and path == f"/outputs/{t.id}.mp4"), None)
        if task is None or not expires or float(expires) < time.time():
            return 403, b"<Error><Code>AccessDenied</Code><Message>Token expired</Message></Error>"
        duration = int(task.body.get("duration", 5))
        with self._lock:
            if duration not in self._clips:
                jpeg = base64.b64decode(task.body["promptImage"].split(",", 1)[1])
                self._clips[duration] = zoom_clip(jpeg, duration, (180, 320))
        return 200, self._clips[duration]


def _prompt_image_problem(value: str) -> str | None:
    if value.startswith("data:"):
        header, _, data = value.partition(",")
        if not header.startswith(("data:image/jpeg", "data:image/png", "data:image/webp")) or ";base64" not in header:
            return "data URI must be a base64 image/jpeg, image/png or image/webp"
        if len(value) > 5_000_000:
            return "data URI is over the 5 MB limit"
        return None if base64.b64decode(data, validate=True) else "empty image"
    if not value.startswith("https://"):
        return "URLs must be HTTPS"
    try:
        head = httpx.head(value, follow_redirects=False, timeout=5)
    except httpx.HTTPError:
        return "failed to fetch asset"
    if head.status_code != 200 or not head.headers.get("Content-Type", "").startswith("image/"):
        return f"asset URL answered HEAD with {head.status_code}; it must answer 200 with an image Content-Type"
    if "Content-Length" not in head.headers:
        return "asset URL sent no Content-Length"
    return None


def _handler_for(fake: FakeRunway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def _log(self) -> bool:
            fake.requests.append(
                {
                    "method": self.command,
                    "path": self.path.split("?", 1)[0],
                    "authorization": self.headers.get("Authorization"),
                    "version": self.headers.get("X-Runway-Version"),
                }
            )
            if self.headers.get("Authorization") != f"Bearer {fake.secret}":
                send_json(self, 401, {"error": "Invalid API key"})
                return False
            if self.headers.get("X-Runway-Version") != "2024-11-06":
                send_json(self, 400, {"error": "X-Runway-Version header is missing or not a supported version"})
                return False
            return True

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            if not self._log():
                return None
            with fake._lock:
                fault = fake.create_faults.popleft() if fake.create_faults else None
            if fault == "rate_limited":
                return send_json(self, 429, {"error": "You have exceeded the rate limit"})
            status, answer = fake.create(body)
            if fault == "answer_lost":
                time.sleep(fake.answer_lost_s)
                self.close_connection = True
                return None
            if fault == "gateway_timeout":
                return send_json(self, 504, {"error": "Gateway Timeout"})
            return send_json(self, status, answer)

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            if path.startswith("/outputs/"):
                status, data = fake.output(path, query)
                return send(self, status, data, "video/mp4" if status == 200 else "application/xml")
            if not self._log():
                return None
            return send_json(self, *fake.read(path.rsplit("/", 1)[-1]))

    return Handler


@pytest.fixture
def fake_runway() -> Iterator[FakeRunway]:
    server = FakeRunway()
    yield server
    server.stop()
