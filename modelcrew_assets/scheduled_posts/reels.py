"""Reels in the approved set: each finished reel generated_reels hands over becomes a video post on every
`[reels].platforms` entry (Instagram Reels and TikTok by default) that has a channel, in the same calendar
as the exports. A reel's export id is `reel-<reel key>`: a re-finished file (new watermark or music)
replaces the older one while unposted, and the same reel is never posted twice to one platform."""

from __future__ import annotations

from modelcrew_assets.generated_reels.index import GeneratedReels
from modelcrew_assets.handoffs import MissingUpstreamError, read_index
from modelcrew_assets.object_store import Storage
from modelcrew_assets.scheduled_posts.index import BacklogItem


def reel_export_id(reel_key: str) -> str:
    return f"reel-{reel_key}"


def read_reels(storage: Storage, model: str) -> GeneratedReels | None:
    """The model's reels, or None while generated_reels has not run for it (posting images only)."""
    try:
        return read_index(storage, model, GeneratedReels)
    except MissingUpstreamError:
        return None


def reel_items(reels: GeneratedReels, platforms: tuple[str, ...]) -> list[BacklogItem]:
    return [
        BacklogItem(
            export_id=reel_export_id(reel.key),
            platform=platform,
            export_key=reel.video_key,
            source_key=reel.still_key,
            batch_id=reel.batch_id,
            image_index=position,
            prompt=reel.still_prompt,
            media="video",
            poster_key=reel.poster_key,
            thumbnail_offset_ms=round(reel.poster_at_s * 1000),
            identity=reel.identity,
        )
        for position, reel in enumerate(reels.reels)
        for platform in platforms
    ]
