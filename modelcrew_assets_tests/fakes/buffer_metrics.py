"""Fakes for the metrics sources, on 127.0.0.1.

`FakeBufferMetrics` is the Buffer fake (fakes/buffer.py, same server and handler) answering the
`PostMetrics` posts query as Buffer documents it: `metrics { type value unit }` and `metricsUpdatedAt`
per post, `metricsUpdatedAt: null` (values 0) while a post is not measured yet, and, with
`experimental_withdrawn`, the validation error a schema without the experimental field gives.
`FakeInstagram` answers `GET /me/media` (newest first, cursor paging) and `GET /<media>/insights`
(lifetime values; empty `data` when there is nothing yet; error 10 "not enough viewers" on request).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlparse

import pytest

from modelcrew_assets_tests.fakes.buffer import FakeBuffer, _errors
from modelcrew_assets_tests.fakes.loopback import LoopbackServer, send_json

FAKE_INSTAGRAM_TOKEN = "test-ig-token-77c1"


@dataclass
class FakeBufferMetrics(FakeBuffer):
    measured: dict[str, dict[str, float]] = field(default_factory=dict)  # post id -> metric type -> value
    measured_at: str = "2026-11-20T06:00:00.000Z"
    experimental_withdrawn: bool = False

    def _op_PostMetrics(self, variables: dict) -> tuple[int, dict, dict]:
        if self.experimental_withdrawn:
            return 200, _errors("GRAPHQL_VALIDATION_FAILED", 'Cannot query field "metrics" on type "Post".'), {}
        status, answer, headers = self._op_Posts(variables)
        for edge in answer["data"]["posts"]["edges"]:
            node = edge["node"]
            values = self.measured.get(node["id"])
            node.pop("assets", None)
            types = ("reach", "impressions", "views", "reactions", "comments", "shares", "saves")
            node["metrics"] = [{"type": t, "value": (values or {}).get(t, 0.0), "unit": "count"} for t in types] + [
                {"type": "engagementRate", "value": (values or {}).get("engagementRate", 0.0), "unit": "percentage"}
            ]
            node["metricsUpdatedAt"] = self.measured_at if values is not None else None
        return status, answer, headers


@pytest.fixture
def fake_buffer_metrics() -> Iterator[FakeBufferMetrics]:
    server = FakeBufferMetrics()
    yield server
    server.stop()


@dataclass
class FakeInstagram:
    media: list[dict] = field(default_factory=list)  # {"id", "timestamp"}, newest first
    insights: dict[str, dict[str, float]] = field(default_factory=dict)  # media id -> metric -> value
    not_enough_viewers: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)
    page_size: int = 2

    def __post_init__(self) -> None:
        self._http = LoopbackServer(_instagram_handler(self))

    @property
    def url(self) -> str:
        return self._http.url

    def stop(self) -> None:
        self._http.stop()

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict]:
        if path == "/me/media":
            start = int((query.get("after") or ["0"])[0])
            page = self.media[start : start + self.page_size]
            more = start + self.page_size < len(self.media)
            paging = {"cursors": {"after": str(start + self.page_size)}} if more else {}
            return 200, {"data": page, "paging": paging}
        media_id = path.strip("/").split("/")[0]
        if media_id in self.not_enough_viewers:
            return 400, {"error": {"message": "(#10) Not enough viewers for the media to show insights", "code": 10}}
        asked = (query.get("metric") or [""])[0].split(",")
        if {"impressions", "plays"} & set(asked):
            return 400, {"error": {"message": "metric is deprecated", "code": 100}}
        values = self.insights.get(media_id, {})
        data = [{"name": n, "period": "lifetime", "values": [{"value": values[n]}]} for n in asked if n in values]
        return 200, {"data": data}


def _instagram_handler(fake: FakeInstagram) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            url = urlparse(self.path)
            fake.requests.append(self.path)
            if self.headers.get("Authorization") != f"Bearer {FAKE_INSTAGRAM_TOKEN}" or "access_token" in url.query:
                status, body = 400, {"error": {"message": "Invalid OAuth access token", "code": 190}}
            else:
                status, body = fake.answer(url.path, parse_qs(url.query))
            send_json(self, status, body)

    return Handler


@pytest.fixture
def fake_instagram() -> Iterator[FakeInstagram]:
    server = FakeInstagram()
    yield server
    server.stop()
