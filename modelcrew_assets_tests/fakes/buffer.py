"""A fake Buffer GraphQL API: real HTTP on 127.0.0.1, one POST endpoint, Bearer key.

It reads each request's operation name and variables and answers as Buffer documents it: HTTP 200 with
`data` (createPost / deletePost as a union, `__typename` set: PostActionSuccess / DeletePostSuccess or a
MutationError member with a message), HTTP 200 with `errors[].extensions.code` for system problems (bad key,
unknown channel), HTTP 429 with `errors[0].extensions = {code: RATE_LIMIT_EXCEEDED, retryAfter}` and the IETF
RateLimit headers (no Retry-After header), and LimitReachedError once a channel's daily limit is used.
createPost takes the 2026 `assets` array of one-of entries and refuses the old `{images: [...]}` object;
video entries are checked as VideoAssetInput is (url, metadata.thumbnailOffset as an Int, thumbnailUrl
refused), an Instagram `type: reel` needs one video, and unknown input fields fail as GraphQL's variable
coercion does (BAD_USER_INPUT).
Faults are scripted per createPost: rate limited, answer lost after the post was created (the client times
out), connection dropped before anything was created.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from modelcrew_assets_tests.fakes.loopback import send_json, serving_thread

FAKE_BUFFER_KEY = "test-buffer-key-5b1f0c"
ORGANIZATION = "org-1"


@dataclass
class FakePost:
    id: str
    channel_id: str
    text: str
    status: str
    due_at: str | None
    media_urls: list[str]
    metadata: dict
    deleted: bool = False


@dataclass
class FakeBuffer:
    api_key: str = FAKE_BUFFER_KEY
    channels: list[dict] = field(
        default_factory=lambda: [
            {"id": "ch-insta", "service": "instagram", "name": "blondie"},
            {"id": "ch-tiktok", "service": "tiktok", "name": "blondie"},
        ]
    )
    daily_limit: int = 10
    posts: list[FakePost] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)  # {"operation", "variables", "authorization"}
    create_faults: deque = field(default_factory=deque)  # "rate_limited", "answer_lost", "dropped", "gateway_timeout"
    answer_lost_s: float = 1.5

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        serving_thread(self._server).start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def live_posts(self) -> list[FakePost]:
        return [post for post in self.posts if not post.deleted]

    def operations(self, name: str) -> list[dict]:
        return [request for request in self.requests if request["operation"] == name]

    def add_post(self, channel_id: str, url: str, due_at: str | None, status: str = "draft") -> FakePost:
        """A post made some other way (e.g. by a run that crashed before it heard the answer)."""
        with self._lock:
            post = FakePost(f"post-{next(self._ids)}", channel_id, "", status, due_at, [url], {})
            self.posts.append(post)
            return post

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, operation: str, variables: dict) -> tuple[int, dict, dict[str, str]]:
        handler = getattr(self, f"_op_{operation}", None)
        if handler is None:
            return 200, _errors("GRAPHQL_VALIDATION_FAILED", f"unknown operation {operation}"), {}
        return handler(variables)

    def _op_Organizations(self, variables: dict) -> tuple[int, dict, dict]:
        return 200, {"data": {"account": {"organizations": [{"id": ORGANIZATION}]}}}, {}

    def _op_Channels(self, variables: dict) -> tuple[int, dict, dict]:
        if variables.get("organizationId") != ORGANIZATION:
            return 200, _errors("NOT_FOUND", "organization not found"), {}
        return 200, {"data": {"channels": self.channels}}, {}

    def _op_DailyLimits(self, variables: dict) -> tuple[int, dict, dict]:
        today = datetime.now(UTC).date()
        rows = [
            {"channelId": c, "isAtLimit": self._count_on(c, today) >= self.daily_limit} for c in variables["channelIds"]
        ]
        return 200, {"data": {"dailyPostingLimits": rows}}, {}

    def _op_CreatePost(self, variables: dict) -> tuple[int, dict, dict]:
        data = variables["input"]
        if not any(c["id"] == data.get("channelId") for c in self.channels):
            return 200, _errors("NOT_FOUND", f"channel {data.get('channelId')} not found"), {}
        shape = _shape_problem(data)
        if shape:  # GraphQL refuses the variables before createPost runs
            return 200, _errors("BAD_USER_INPUT", f'Variable "$input" got invalid value: {shape}'), {}
        problem = _input_problem(data)
        if problem:
            return 200, _typed("createPost", "InvalidInputError", problem), {}
        day = _at(data["dueAt"]).date() if data.get("dueAt") else datetime.now(UTC).date()
        if self._count_on(data["channelId"], day) >= self.daily_limit:
            return 200, _typed("createPost", "LimitReachedError", "You have reached the daily posting limit"), {}
        with self._lock:
            due = data.get("dueAt") or f"2099-01-01T{len(self.posts) % 24:02d}:00:00.000Z"
            post = FakePost(
                f"post-{next(self._ids)}",
                data["channelId"],
                data["text"],
                "draft" if data.get("saveToDraft") else "scheduled",
                due,
                [next(iter(asset.values()))["url"] for asset in data["assets"]],
                data.get("metadata") or {},
            )
            self.posts.append(post)
        success = {"__typename": "PostActionSuccess", "post": {"id": post.id, "status": post.status, "dueAt": due}}
        return 200, {"data": {"createPost": success}}, {}

    def _op_Posts(self, variables: dict) -> tuple[int, dict, dict]:
        flt = variables["input"].get("filter") or {}
        due = flt.get("dueAt") or {}
        matching = [
            p
            for p in self.live_posts()
            if (not flt.get("channelIds") or p.channel_id in flt["channelIds"])
            and (not due.get("start") or (p.due_at and _at(p.due_at) >= _at(due["start"])))
            and (not due.get("end") or (p.due_at and _at(p.due_at) <= _at(due["end"])))
        ]
        start = int(variables.get("after") or 0)
        first = int(variables.get("first") or 20)
        page = matching[start : start + first]
        edges = [
            {
                "node": {
                    "id": p.id,
                    "status": p.status,
                    "dueAt": p.due_at,
                    "assets": [{"source": u} for u in p.media_urls],
                }
            }
            for p in page
        ]
        more = start + first < len(matching)
        info = {"hasNextPage": more, "endCursor": str(start + first) if more else None}
        return 200, {"data": {"posts": {"edges": edges, "pageInfo": info}}}, {}

    def _op_DeletePost(self, variables: dict) -> tuple[int, dict, dict]:
        post_id = variables["input"]["id"]
        for post in self.live_posts():
            if post.id == post_id:
                post.deleted = True
                return 200, {"data": {"deletePost": {"__typename": "DeletePostSuccess", "id": post_id}}}, {}
        return 200, _typed("deletePost", "NotFoundError", f"post {post_id} not found"), {}

    def _count_on(self, channel_id: str, day: date) -> int:
        return sum(
            1 for p in self.live_posts() if p.channel_id == channel_id and p.due_at and _at(p.due_at).date() == day
        )


def rate_limited(retry_after: int = 1) -> tuple[int, dict, dict[str, str]]:
    body = {
        "data": None,
        "errors": [
            {"message": "Too many requests", "extensions": {"code": "RATE_LIMIT_EXCEEDED", "retryAfter": retry_after}}
        ],
    }
    headers = {
        "RateLimit": f'"100-in-15min";r=0;t={retry_after}, "250-in-1day";r=120;t=40000',
        "RateLimit-Policy": '"100-in-15min";q=100;w=900, "250-in-1day";q=250;w=86400',
    }
    return 429, body, headers


# The input fields each asset kind and platform metadata type has (AssetInput is a one-of).
_ASSET_FIELDS = {"image": {"url", "thumbnailUrl", "metadata"}, "video": {"url", "thumbnailUrl", "metadata"}}
_VIDEO_METADATA_FIELDS = {"thumbnailOffset"}
_INSTAGRAM_FIELDS = {"type", "shouldShareToFeed", "isAiGenerated", "firstComment", "link", "geolocation"}
_TIKTOK_FIELDS = {"title", "isAiGenerated"}
_POST_TYPES = {"post", "story", "reel"}


def _shape_problem(data: dict) -> str | None:
    """What GraphQL's input coercion refuses: unknown fields, missing required ones, wrong types."""
    for asset in data.get("assets") or []:
        if not isinstance(asset, dict) or len(asset) != 1 or next(iter(asset)) not in _ASSET_FIELDS:
            continue  # the one-of rule is createPost's own InvalidInputError below
        kind, value = next(iter(asset.items()))
        if not isinstance(value, dict) or not isinstance(value.get("url"), str):
            return f"assets.{kind}.url: String! is required"
        if set(value) - _ASSET_FIELDS[kind]:
            return f"assets.{kind}: unknown fields {sorted(set(value) - _ASSET_FIELDS[kind])}"
        metadata = value.get("metadata") or {}
        if kind == "video" and (set(metadata) - _VIDEO_METADATA_FIELDS or not _is_int(metadata, "thumbnailOffset")):
            return "assets.video.metadata: VideoMetadataInput takes {thumbnailOffset: Int}"
    metadata = data.get("metadata") or {}
    instagram, tiktok = metadata.get("instagram"), metadata.get("tiktok")
    if instagram is not None:
        if set(instagram) - _INSTAGRAM_FIELDS or "shouldShareToFeed" not in instagram:
            return "metadata.instagram: unknown fields, or shouldShareToFeed: Boolean! missing"
        if instagram.get("type") not in _POST_TYPES:
            return f"metadata.instagram.type: {instagram.get('type')!r} is not a PostType"
    if tiktok is not None and set(tiktok) - _TIKTOK_FIELDS:
        return f"metadata.tiktok: unknown fields {sorted(set(tiktok) - _TIKTOK_FIELDS)}"
    return None


def _is_int(values: dict, name: str) -> bool:
    return name not in values or (isinstance(values[name], int) and not isinstance(values[name], bool))


def _input_problem(data: dict) -> str | None:
    assets = data.get("assets")
    if not isinstance(assets, list) or not all(isinstance(a, dict) and len(a) == 1 for a in assets):
        return "assets must be a list of one-of entries ({image: {url}} or {video: {url}})"
    kinds = [next(iter(asset)) for asset in assets]
    if any("thumbnailUrl" in asset["video"] for asset in assets if "video" in asset):
        return "video assets do not take thumbnailUrl; choose the cover with metadata.thumbnailOffset"
    if ((data.get("metadata") or {}).get("instagram") or {}).get("type") == "reel" and kinds != ["video"]:
        return "an Instagram reel takes exactly one video asset"
    if data.get("mode") == "customScheduled" and not data.get("dueAt"):
        return "dueAt is required when mode is customScheduled"
    if data.get("mode") not in ("addToQueue", "shareNow", "shareNext", "customScheduled"):
        return f"unknown mode {data.get('mode')!r}"
    return None


def _typed(field_name: str, typename: str, message: str) -> dict:
    return {"data": {field_name: {"__typename": typename, "message": message}}}


def _errors(code: str, message: str) -> dict:
    return {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]}


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


def _handler_for(fake: FakeBuffer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            operation = body.get("operationName") or body.get("query", "").split("(")[0].split("{")[0].split()[1]
            variables = body.get("variables") or {}
            with fake._lock:
                fake.requests.append(
                    {"operation": operation, "variables": variables, "authorization": self.headers.get("Authorization")}
                )
                fault = fake.create_faults.popleft() if operation == "CreatePost" and fake.create_faults else None
            if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                return self._send(200, _errors("UNAUTHORIZED", "Invalid or missing API key"), {})
            if fault == "rate_limited":
                return self._send(*rate_limited())
            if fault == "dropped":
                self.close_connection = True
                self.connection.shutdown(2)
                return None
            status, answer, headers = fake.answer(operation, variables)
            if fault == "answer_lost":
                time.sleep(fake.answer_lost_s)
                self.close_connection = True
                return None
            if fault == "gateway_timeout":  # the post was made; the proxy in front gave up waiting for it
                return self._send(504, {"message": "Gateway Timeout"}, {})
            return self._send(status, answer, headers)

        def _send(self, status: int, answer: dict, headers: dict[str, str]) -> None:
            # The IETF RateLimit fields go out as repeated headers, the way Buffer sends them.
            split = [
                (n, item) for n, v in headers.items() for item in (v.split(", ") if n.startswith("RateLimit") else [v])
            ]
            send_json(self, status, answer, split)

    return Handler


@pytest.fixture
def fake_buffer() -> Iterator[FakeBuffer]:
    server = FakeBuffer()
    yield server
    server.stop()
