"""A fake OpenAI-compatible vision endpoint: real HTTP on 127.0.0.1, POST /v1/chat/completions.

It checks what a real server would (bearer key, model, an image_url data URI that decodes as an image),
answers with a caption after an injected latency, and plays scripted replies first: 429 with Retry-After,
500, malformed JSON, or a given caption text. It records every request and the peak of concurrent ones.

`reasoning_model=True` answers like OpenAI's o-series and gpt-5 models: HTTP 400 `unsupported_parameter`
for `max_tokens` and `unsupported_value` for a temperature other than 1 (one error at a time, the first
offending parameter), and reasoning tokens count against `max_completion_tokens`: a budget they use up
leaves an empty answer with finish_reason "length".
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from modelcrew_assets_tests.fakes.loopback import serving_thread

DEFAULT_CAPTION = "a woman wearing a white spacesuit, standing in front of a flag, smiling, studio lighting"
FAKE_API_KEY = "test-caption-key"
FAKE_MODEL = "fake-vision-1"
REASONING_TOKENS = 384  # what the fake "reasoning model" spends before it writes the caption


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a status and raw body, or (status 200) a caption to wrap as a completion."""

    status: int = 200
    caption: str | None = None
    raw_body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def too_many_requests(retry_after: str = "0") -> Reply:
    return Reply(429, raw_body=b'{"error": {"message": "rate limited"}}', headers={"Retry-After": retry_after})


def server_error() -> Reply:
    return Reply(500, raw_body=b'{"error": {"message": "internal error"}}')


def malformed_json() -> Reply:
    return Reply(200, raw_body=b'{"choices": [{"message": {"content": "a wom')


def caption(text: str) -> Reply:
    return Reply(200, caption=text)


class _Server(ThreadingHTTPServer):
    # The default listen backlog (5) is below the 8+ connections the captioner opens at once.
    request_queue_size = 128
    daemon_threads = True


class FakeOpenAICompatible:
    def __init__(self, latency_s: float = 0.0, api_key: str = FAKE_API_KEY, reasoning_model: bool = False):
        self.latency_s = latency_s
        self.api_key = api_key
        self.reasoning_model = reasoning_model
        self.rejected: list[dict] = []  # requests answered 400 for a parameter the model does not take
        self.default_caption = DEFAULT_CAPTION
        self.requests: list[dict] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._thread = serving_thread(self._server)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def script(self, *replies: Reply) -> None:
        """Replies for the next requests, in order; after them every request gets the default caption."""
        with self._lock:
            self._script.extend(replies)

    def start(self) -> FakeOpenAICompatible:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _enter(self) -> Reply:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            return self._script.popleft() if self._script else Reply(caption=self.default_caption)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1


def _handler_for(fake: FakeOpenAICompatible) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            return

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path != "/v1/chat/completions":
                return self._send(404, b'{"error": {"message": "not found"}}')
            if fake.api_key and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                return self._send(401, b'{"error": {"message": "invalid api key"}}')
            problem = _request_problem(body)
            if problem:
                return self._send(400, json.dumps({"error": {"message": problem}}).encode())
            if fake.reasoning_model and (unsupported := _unsupported_by_reasoning_models(json.loads(body))):
                with fake._lock:
                    fake.rejected.append(json.loads(body))
                return self._send(400, json.dumps(unsupported).encode())
            reply = fake._enter()
            try:
                with fake._lock:
                    fake.requests.append(json.loads(body))
                time.sleep(fake.latency_s)
                if reply.caption is not None:
                    answer = _completion(reply.caption, json.loads(body), fake.reasoning_model)
                    return self._send(reply.status, json.dumps(answer).encode(), reply.headers)
                return self._send(reply.status, reply.raw_body or b"", reply.headers)
            finally:
                fake._leave()

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _unsupported_by_reasoning_models(request: dict) -> dict | None:
    """OpenAI's 400 for the first parameter a reasoning model does not take, or None."""
    if "max_tokens" in request:
        message = (
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead."
        )
        return {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": "max_tokens",
                "code": "unsupported_parameter",
            }
        }
    if request.get("temperature", 1) != 1:
        message = (
            f"Unsupported value: 'temperature' does not support {request['temperature']} with this model. "
            "Only the default (1) value is supported."
        )
        return {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": "temperature",
                "code": "unsupported_value",
            }
        }
    return None


def _completion(caption: str, request: dict, reasoning_model: bool) -> dict:
    """A chat completion; a reasoning model's reasoning tokens come out of max_completion_tokens first."""
    words = len(caption.split())
    if not reasoning_model:
        message = {"role": "assistant", "content": caption}
        return {
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"completion_tokens": words},
        }
    budget = request.get("max_completion_tokens")
    cut = budget is not None and budget < REASONING_TOKENS + 2 * words
    content = "" if cut else caption
    used = budget if cut else REASONING_TOKENS + 2 * words
    usage = {"completion_tokens": used, "completion_tokens_details": {"reasoning_tokens": min(used, REASONING_TOKENS)}}
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": content},
        "finish_reason": "length" if cut else "stop",
    }
    return {"choices": [choice], "usage": usage}


def _request_problem(body: bytes) -> str | None:
    """What a real server would reject in the request, or None."""
    try:
        request = json.loads(body)
        parts = request["messages"][-1]["content"]
        url = next(part["image_url"]["url"] for part in parts if part.get("type") == "image_url")
    except (ValueError, KeyError, IndexError, TypeError, StopIteration):
        return "expected messages[-1].content with an image_url part"
    if not request.get("model"):
        return "model is required"
    prefix = "data:image/jpeg;base64,"
    if not url.startswith(prefix):
        return "image_url must be a data:image/jpeg;base64 URI"
    try:
        Image.open(io.BytesIO(base64.b64decode(url[len(prefix) :]))).verify()
    except Exception:
        return "image_url does not decode as an image"
    return None


@contextmanager
def running_fake(latency_s: float = 0.0, reasoning_model: bool = False) -> Iterator[FakeOpenAICompatible]:
    fake = FakeOpenAICompatible(latency_s, reasoning_model=reasoning_model).start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAICompatible]:
    with running_fake() as fake:
        yield fake
