"""What every fake service's HTTP server shares: the thread it runs on (127.0.0.1, daemon) and how it answers."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# serve_forever checks for shutdown() this often; the stdlib's 0.5 s made every fixture's teardown wait.
SHUTDOWN_POLL_S = 0.02


def serving_thread(server: socketserver.BaseServer) -> threading.Thread:
    return threading.Thread(target=server.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL_S}, daemon=True)


def send(
    handler: BaseHTTPRequestHandler,
    status: int,
    data: bytes,
    content_type: str,
    headers: Iterable[tuple[str, str]] = (),
) -> None:
    """One whole answer: status, Content-Type and -Length, any further headers (a name may repeat), body."""
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    for name, value in headers:
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


def send_json(
    handler: BaseHTTPRequestHandler, status: int, answer: object, headers: Iterable[tuple[str, str]] = ()
) -> None:
    send(handler, status, json.dumps(answer).encode(), "application/json", headers)


class LoopbackServer:
    """A threading HTTP server on a free port of 127.0.0.1, serving on a daemon thread from the start."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        serving_thread(self.server).start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
