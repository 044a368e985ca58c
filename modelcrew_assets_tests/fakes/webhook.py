"""A Slack-style incoming-webhook receiver on 127.0.0.1 that records what it is sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from modelcrew_assets_tests.fakes.loopback import serving_thread


@dataclass
class WebhookReceiver:
    url: str
    messages: list[dict] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    fail_next: int = 0


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            receiver.paths.append(self.path)
            if receiver.fail_next:
                receiver.fail_next -= 1
                self.send_response(503)
                self.end_headers()
                return
            receiver.messages.append(json.loads(body))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_port}/services/T000/B000/secret-token"
    thread = serving_thread(server)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()
