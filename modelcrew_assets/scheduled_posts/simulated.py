"""SimulatedPostingResource: a stand-in for Buffer that posts nowhere. Each "post" is a JSON record in
storage (models/<m>/scheduled_posts/simulated/<id>.json, `dry_run: true`), so the calendar, ledger and
withdrawals run end to end at no cost and a person can see what would have been sent."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import ClassVar

from pydantic import Field

from modelcrew_assets.manifest import PostingChannel
from modelcrew_assets.object_store import Storage
from modelcrew_assets.scheduled_posts.posting import (
    PUBLISH_PREFIX,
    Channel,
    PostingServiceResource,
    PostRequest,
    RemotePost,
)
from modelcrew_assets.storage_keys import asset_prefix

# A reserved top-level domain (RFC 2606): nothing is ever fetched from it.
SIMULATED_MEDIA_BASE_URL = "https://public-media.invalid"


class SimulatedPostingResource(PostingServiceResource):
    """Posts are recorded in storage, never sent; everything it makes says dry_run."""

    simulated: ClassVar[bool] = True
    public_media_base_url: str | None = Field(default=None, description="shown in the records when set")

    def public_url(self, publish_key: str) -> str:
        base = (self.public_media_base_url or SIMULATED_MEDIA_BASE_URL).rstrip("/")
        return f"{base}/{publish_key.removeprefix(PUBLISH_PREFIX)}"

    @asynccontextmanager
    async def session(self, storage: Storage, model: str) -> AsyncIterator[SimulatedSession]:
        yield SimulatedSession(storage, f"{asset_prefix(model, 'scheduled_posts')}simulated/")


class SimulatedSession:
    def __init__(self, storage: Storage, prefix: str):
        self._storage = storage
        self._prefix = prefix

    async def resolve_channels(self, wanted: dict[str, PostingChannel]) -> dict[str, Channel]:
        resolved = {}
        for platform, ref in wanted.items():
            service = ref.service or platform.split("_", 1)[0]
            name = ref.name or platform
            resolved[platform] = Channel(ref.id or f"simulated-{service}-{name}", service, name, "simulated")
        return resolved

    async def channels_at_daily_limit(self, channel_ids: list[str]) -> set[str]:
        return set()

    async def create_post(self, request: PostRequest) -> RemotePost:
        identity = f"{request.channel.id}|{request.media_url}|{request.due_at}"
        post_id = "sim-" + hashlib.sha256(identity.encode()).hexdigest()[:16]
        record = {
            "id": post_id,
            "dry_run": True,
            "channel_id": request.channel.id,
            "service": request.channel.service,
            "status": "draft" if request.draft else "scheduled",
            "due_at": request.due_at.isoformat() if request.due_at else None,
            "text": request.text,
            "media_url": request.media_url,
            "video": request.video,
            "title": request.title,
        }
        self._storage.put_bytes(
            f"{self._prefix}{post_id}.json", json.dumps(record, indent=2).encode(), "application/json"
        )
        return _remote(record)

    async def find_posts(self, channel: Channel, start: datetime, end: datetime) -> list[RemotePost]:
        posts = [_remote(record) for record in self._records() if record["channel_id"] == channel.id]
        return [post for post in posts if post.due_at is None or start <= post.due_at <= end]

    async def delete_post(self, post_id: str) -> None:
        key = f"{self._prefix}{post_id}.json"
        record = json.loads(self._storage.get_bytes(key))
        # Storage has no delete: the record stays, marked as Buffer would no longer list it.
        self._storage.put_bytes(key, json.dumps({**record, "status": "deleted"}, indent=2).encode(), "application/json")

    def _records(self) -> list[dict]:
        records = [json.loads(self._storage.get_bytes(item.key)) for item in self._storage.list(self._prefix)]
        return [record for record in records if record["status"] != "deleted"]


def _remote(record: dict) -> RemotePost:
    due = datetime.fromisoformat(record["due_at"]) if record["due_at"] else None
    return RemotePost(record["id"], record["status"], due, (record["media_url"],))
