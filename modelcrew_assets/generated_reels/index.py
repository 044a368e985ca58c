"""What generated_reels hands on (models/<m>/generated_reels/index.json): the batch's finished reels, which
scheduled_posts posts as video on Instagram Reels and TikTok."""

from __future__ import annotations

import json
from typing import ClassVar

from modelcrew_assets import asset_names
from modelcrew_assets.handoffs import Handoff, StageIndex
from modelcrew_assets.object_store import Storage
from modelcrew_assets.storage_keys import asset_prefix


class Reel(Handoff):
    key: str  # the reel key: still, motion, provider, model, duration
    batch_id: str
    video_key: str  # models/<m>/generated_reels/<key>-<finish settings>.mp4
    poster_key: str
    poster_at_s: float  # the poster's frame in the video: the cover the post asks for
    video_sha256: str
    still_key: str
    still_sha256: str
    identity: float
    motion: str
    prompt: str  # what the video model was asked
    still_prompt: str  # the still's own prompt (the post's caption comes from it)
    seed: int
    provider: str
    provider_model: str
    paid_seconds: int  # the video length asked (and paid) for
    duration_s: float  # as ffmpeg reads the finished file
    width: int
    height: int
    job_ids: tuple[str, ...]
    cost_usd: float  # what its jobs were billed
    music_key: str | None = None
    digital_source_type: str
    c2pa_signed: bool = False
    dry_run: bool = False


class GeneratedReels(StageIndex):
    ASSET: ClassVar[str] = asset_names.GENERATED_REELS
    batch_id: str
    reels: tuple[Reel, ...]
    needs_attention: tuple[str, ...] = ()  # reel keys whose create went unanswered (see DESIGN)


def scores_key(model: str, batch_id: str) -> str:
    return f"{asset_prefix(model, asset_names.GENERATED_REELS)}scores/{batch_id}.json"


def stored_identity_scores(storage: Storage, model: str, batch_id: str) -> dict[str, float]:
    """What stills.identity_scores measured for a batch (image sha256 -> score); {} before it ran."""
    try:
        return json.loads(storage.get_bytes(scores_key(model, batch_id)))
    except KeyError:
        return {}
