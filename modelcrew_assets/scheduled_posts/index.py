"""What scheduled_posts keeps between runs: the approved exports and reels seen so far (so older batches
still get their turn after platform_exports moves on) and the channels Buffer resolved (asked once, then
cached)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from modelcrew_assets import asset_names
from modelcrew_assets.handoffs import StageIndex
from modelcrew_assets.scheduled_posts.ledger import Media


class BacklogItem(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    export_id: str
    platform: str
    export_key: str
    source_key: str
    batch_id: str
    image_index: int
    prompt: str = ""
    media: Media = "image"
    poster_key: str = ""
    thumbnail_offset_ms: int | None = None
    # The likeness of the still (a reel's, or the exported image's) to the model's face, as generated_reels
    # measured it; None before that stage scored the batch.
    identity: float | None = None


class CachedChannel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    service: str
    name: str
    organization_id: str = ""


class ScheduledPosts(StageIndex):
    ASSET: ClassVar[str] = asset_names.SCHEDULED_POSTS
    batches: tuple[str, ...] = ()  # batch ids in the order they were first seen: oldest first
    backlog: tuple[BacklogItem, ...] = ()
    channels_fingerprint: str = ""
    channels: dict[str, CachedChannel] = {}
    calendar_key: str = ""
