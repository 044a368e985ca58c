"""The post ledger: one JSON record per (export or reel, platform) at models/<m>/scheduled_posts/ledger/, written
*before* createPost is sent, so a retried or restarted run knows a post may exist and reconciles it
(lists the channel's posts around its dueAt and matches the asset URL) before anything is sent again."""

from __future__ import annotations

from datetime import datetime
from pathlib import PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict

from modelcrew_assets.object_store import Storage
from modelcrew_assets.storage_keys import asset_prefix

# sending: written before createPost, outcome not yet known; created: the service holds the post;
# rejected: the service refused it (nothing exists; planned again next run); deleted: withdrawn.
PostState = Literal["sending", "created", "rejected", "deleted"]
LIVE_STATES = ("sending", "created")
Media = Literal["image", "video"]  # an export JPEG, or a generated_reels MP4


class PostEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    export_id: str  # <batch>-<source image stem>: the same image however often it is re-rendered
    platform: str
    export_key: str
    source_key: str
    batch_id: str
    channel_id: str
    mode: Literal["draft", "scheduled", "queue"]
    due_at: datetime | None  # UTC; None for the queue until the service answers
    publish_key: str
    asset_url: str
    text: str
    state: PostState
    title: str = ""
    post_id: str | None = None
    remote_status: str = ""
    reason: str = ""
    attempts: int = 0
    dry_run: bool = False
    updated_at: datetime
    media: Media = "image"
    poster_key: str = ""  # video only: its poster JPEG (the UI's thumbnail)
    thumbnail_offset_ms: int | None = None  # video only: the frame the platform shows as its cover

    @property
    def file_name(self) -> str:
        return PurePosixPath(self.export_key).name


def ledger_prefix(model: str) -> str:
    return f"{asset_prefix(model, 'scheduled_posts')}ledger/"


def entry_key(model: str, export_id: str, platform: str) -> str:
    return f"{ledger_prefix(model)}{export_id}-{platform}.json"


def write_entry(storage: Storage, model: str, entry: PostEntry) -> PostEntry:
    storage.put_bytes(
        entry_key(model, entry.export_id, entry.platform), entry.model_dump_json(indent=2).encode(), "application/json"
    )
    return entry


def read_ledger(storage: Storage, model: str) -> dict[tuple[str, str], PostEntry]:
    entries = {}
    for item in storage.list(ledger_prefix(model)):
        if item.key.endswith(".json"):
            entry = PostEntry.model_validate_json(storage.get_bytes(item.key))
            entries[(entry.export_id, entry.platform)] = entry
    return entries
