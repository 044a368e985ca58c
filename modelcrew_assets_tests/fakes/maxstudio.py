"""A fake MaxStudio: a real threaded HTTP server on 127.0.0.1 with injectable latency and faults.

It checks the `x-api-key` header, fetches the presigned URLs it is given (from moto S3), detects faces with
OpenCV, and serves the swap results itself. It counts what a test needs to judge cost and concurrency:
jobs created, polls per job, faults served and the highest number of simultaneous requests.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import random
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from modelcrew_assets.face_detection import FaceBox, detect_faces
from modelcrew_assets.resources.maxstudio import MaxStudioResource
from modelcrew_assets_tests.fakes.loopback import serving_thread

TEST_KEY = "test-maxstudio-key"


@dataclass
class Faults:
    request_latency_s: float = 0.0
    job_latency_s: float = 0.1
    rate_429: float = 0.0
    retry_after: str = "0"
    rate_503: float = 0.0
    scripted: list[int] = field(default_factory=list)  # statuses to answer first, in order, on any call
    job_failure_rate: float = 0.0
    fail_next_jobs: int = 0
    create_hang_s: float = 0.0  # answer a create only after this long (the client times out first)
    malformed: str | None = None  # non_json_create | missing_job_id | unknown_status | result_404
    echo_key_in_errors: bool = False
    # Real detection (dlib's HOG, face_detection.py) costs CPU per photo, so by default the fake answers a
    # centred box; tests that need real detection (no-face photos) turn it on.
    detect_with_dlib: bool = False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 makes bursts of new connections wait for SYN retries


@dataclass
class Job:
    job_id: str
    kind: str  # swap | enhance
    ready_at: float
    failed: bool
    inputs: tuple[bytes, ...]
    boxes: tuple[tuple[int, int, int, int], ...] = ()
    result: bytes | None = None
    reason: str = "face too small to swap"


@dataclass
class Stats:
    jobs_created: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    requests: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    polls: Counter = field(default_factory=Counter)
    failed_jobs: list[str] = field(default_factory=list)


class FakeMaxStudio:
    def __init__(self, api_key: str = TEST_KEY, seed: int = 7):
        self.api_key = api_key
        self.faults = Faults()
        self.stats = Stats()
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.random = random.Random(seed)
        self.server = _Server(("127.0.0.1", 0), _handler_for(self))
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = serving_thread(self.server)

    def start(self) -> FakeMaxStudio:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def resource(self, **overrides: object) -> MaxStudioResource:
        """A live-mode resource pointed at this fake, with retry and poll delays small enough for tests."""
        settings = dict(
            api_key=self.api_key,
            base_url=self.base_url,
            max_concurrency=8,
            read_timeout_s=5.0,
            retry_base_delay_s=0.01,
            retry_max_delay_s=0.05,
            poll_first_s=0.05,
            poll_interval_s=0.02,
            poll_max_interval_s=0.1,
            job_timeout_s=10.0,
        )
        return MaxStudioResource(**{**settings, **overrides})

    def enter(self) -> None:
        with self.lock:
            self.stats.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)

    def leave(self) -> None:
        with self.lock:
            self.stats.in_flight -= 1

    def injected_fault(self) -> int | None:
        with self.lock:
            if self.faults.scripted:
                return self.faults.scripted.pop(0)
            roll = self.random.random()
            if roll < self.faults.rate_429:
                return 429
            if roll < self.faults.rate_429 + self.faults.rate_503:
                return 503
        return None

    def new_job(self, kind: str, inputs: tuple[bytes, ...], boxes=()) -> Job:
        with self.lock:
            self.stats.jobs_created += 1
            job_id = f"{kind}-{self.stats.jobs_created:05d}"
            fails = self.faults.fail_next_jobs > 0 or self.random.random() < self.faults.job_failure_rate
            if self.faults.fail_next_jobs > 0:
                self.faults.fail_next_jobs -= 1
            job = Job(job_id, kind, time.monotonic() + self.faults.job_latency_s, fails, inputs, tuple(boxes))
            self.jobs[job_id] = job
            if fails:
                self.stats.failed_jobs.append(job_id)
            return job

    def result_of(self, job: Job) -> bytes:
        return job.result if job.kind == "swap" else job.inputs[0]


@functools.lru_cache(maxsize=8)
def _face_crop(face_bytes: bytes) -> Image.Image:
    face = Image.open(io.BytesIO(face_bytes)).convert("RGB")
    found = detect_faces(face)
    return (
        face.crop((found[0].x, found[0].y, found[0].x + found[0].width, found[0].y + found[0].height))
        if found
        else face
    )


def _compose(job: Job) -> bytes:
    """Paste the face image's face into every requested box: visibly swapped, cheap to make."""
    target = Image.open(io.BytesIO(job.inputs[0])).convert("RGB")
    crop = _face_crop(job.inputs[1])
    for x, y, width, height in job.boxes:
        target.paste(crop.resize((width, height)), (x, y))
    buffer = io.BytesIO()
    target.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def _centre_box(image: Image.Image) -> FaceBox:
    side = min(image.size) // 3
    return FaceBox((image.width - side) // 2, (image.height - side) // 2, side, side)


def _fetch_inputs(job: Job, media_url: str, face_url: str) -> None:
    try:
        job.inputs = (_fetch(media_url), _fetch(face_url))
        job.result = _compose(job)  # the job is "running" until its result exists
    except OSError as error:
        job.failed, job.reason = True, f"could not fetch an input image: {error}"


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read()


def _handler_for(fake: FakeMaxStudio) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            return

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def _serve(self, method: str) -> None:
            fake.enter()
            try:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(fake.faults.request_latency_s)
                route = f"{method} {self.path.rsplit('/', 1)[0] if self.path.count('/') > 1 else self.path}"
                with fake.lock:
                    fake.stats.requests[route] += 1
                self._route(method, body)
            except (BrokenPipeError, ConnectionResetError):
                pass
            except Exception as error:  # a bad request body: answer like a real API would
                self._json(400, {"error": f"bad request: {type(error).__name__}: {error}"})
            finally:
                fake.leave()

        def _route(self, method: str, body: bytes) -> None:
            fault = fake.injected_fault()
            if fault:
                with fake.lock:
                    fake.stats.faults[fault] += 1
                headers = {"Retry-After": fake.faults.retry_after} if fault == 429 else {}
                return self._json(fault, {"error": "injected"}, headers)
            if self.path == "/_stats":  # for a benchmark that runs the fake in its own process
                with fake.lock:
                    stats = {"jobs_created": fake.stats.jobs_created, "max_in_flight": fake.stats.max_in_flight}
                return self._json(200, stats)
            if self.path.startswith("/results/"):
                return self._result(self.path[len("/results/") :].removesuffix(".jpg"))
            if self.headers.get("x-api-key") != fake.api_key:
                echo = f" (got {self.headers.get('x-api-key')!r})" if fake.faults.echo_key_in_errors else ""
                return self._json(401, {"error": f"invalid api key{echo}"})
            try:
                payload = json.loads(body) if method == "POST" else None
            except ValueError:
                return self._json(400, {"error": "body is not JSON"})
            if method == "POST" and self.path == "/detect-face-image":
                return self._detect(payload)
            if method == "POST" and self.path == "/swap-image":
                return self._create_swap(payload)
            if method == "POST" and self.path == "/image-enhancer":
                job = fake.new_job("enhance", (base64.b64decode(payload["image"]),))
                return self._created(job)
            if method == "GET" and self.path.startswith(("/swap-image/", "/image-enhancer/")):
                return self._poll(self.path.rsplit("/", 1)[-1])
            return self._json(404, {"error": f"no route {method} {self.path}"})

        def _detect(self, payload: dict) -> None:
            image = Image.open(io.BytesIO(_fetch(payload["imageUrl"]))).convert("RGB")
            found = detect_faces(image) if fake.faults.detect_with_dlib else [_centre_box(image)]
            faces = [{"x": b.x, "y": b.y, "width": b.width, "height": b.height} for b in found]
            self._json(200, {"detectedFaces": faces})

        def _create_swap(self, payload: dict) -> None:
            faces = payload.get("faces") or []
            if not isinstance(payload.get("mediaUrl"), str) or not faces:
                return self._json(400, {"error": "mediaUrl and faces are required"})
            boxes = [tuple(f["originalFace"][k] for k in ("x", "y", "width", "height")) for f in faces]
            job = fake.new_job("swap", (), boxes)
            # Like a real provider, fetch the inputs while the job runs, not before answering.
            fetch = threading.Thread(target=_fetch_inputs, args=(job, payload["mediaUrl"], faces[0]["newFace"]))
            fetch.start()
            self._created(job)

        def _created(self, job: Job) -> None:
            if fake.faults.create_hang_s:
                time.sleep(fake.faults.create_hang_s)
            if fake.faults.malformed == "non_json_create":
                return self._raw(200, b"<html>upstream error</html>", "text/html")
            if fake.faults.malformed == "missing_job_id":
                return self._json(200, {"id": job.job_id})
            self._json(200, {"jobId": job.job_id})

        def _poll(self, job_id: str) -> None:
            job = fake.jobs.get(job_id)
            if job is None:
                return self._json(404, {"error": f"unknown job {job_id}"})
            with fake.lock:
                fake.stats.polls[job_id] += 1
            if fake.faults.malformed == "unknown_status":
                return self._json(200, {"status": "teleporting"})
            if time.monotonic() < job.ready_at or (job.kind == "swap" and job.result is None and not job.failed):
                return self._json(200, {"status": "processing"})
            if job.failed:
                return self._json(200, {"status": "failed", "error": job.reason})
            if job.kind == "enhance":
                return self._json(200, {"status": "completed", "result": base64.b64encode(job.inputs[0]).decode()})
            return self._json(
                200, {"status": "completed", "result": {"mediaUrl": f"{fake.base_url}/results/{job_id}.jpg"}}
            )

        def _result(self, job_id: str) -> None:
            job = fake.jobs.get(job_id)
            if job is None or fake.faults.malformed == "result_404":
                return self._json(404, {"error": "no such result"})
            self._raw(200, fake.result_of(job), "image/jpeg")

        def _json(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
            self._raw(status, json.dumps(body).encode(), "application/json", headers)

        def _raw(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture
def fake_maxstudio() -> Iterator[FakeMaxStudio]:
    fake = FakeMaxStudio().start()
    yield fake
    fake.stop()
