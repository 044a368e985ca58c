"""The stage's asset checks, computed from the stored reels (not from what the run believes)."""

from __future__ import annotations

import dagster as dg

from modelcrew_assets.generated_reels.ffmpeg import REEL_SIZE, FfmpegError, probe
from modelcrew_assets.generated_reels.index import GeneratedReels
from modelcrew_assets.generated_reels.labels import read_mp4_digital_source_type
from modelcrew_assets.object_store import Storage
from modelcrew_assets.platform_exports.labels import AI_SOURCE_TYPES, read_digital_source_type

PLATFORM_READY = "reels_are_1080x1920_h264_of_the_planned_length"
PLATFORM_READY_MEANING = "Every reel is 1080x1920 H.264 in yuv420p, as long as was paid for (within 0.1 s)."
LABELLED = "reels_are_labelled_as_ai_content"
LABELLED_MEANING = "Every reel and its poster carry an AI DigitalSourceType in their XMP."
CHECK_SPECS = ((PLATFORM_READY, PLATFORM_READY_MEANING), (LABELLED, LABELLED_MEANING))


def check_reels(storage: Storage, index: GeneratedReels) -> list[dg.AssetCheckResult]:
    unready, unlabelled = [], []
    for reel in index.reels:
        mp4 = storage.get_bytes(reel.video_key)
        try:
            info = probe(mp4)
        except FfmpegError as error:
            unready.append(f"{reel.video_key}: {error}")
        else:
            if (info.width, info.height) != REEL_SIZE or info.codec != "h264" or info.pixel_format != "yuv420p":
                unready.append(f"{reel.video_key}: {info.width}x{info.height} {info.codec} {info.pixel_format}")
            elif abs(info.duration_s - reel.paid_seconds) > 0.1:
                unready.append(f"{reel.video_key}: {info.duration_s:.2f} s, paid for {reel.paid_seconds} s")
        types = (read_mp4_digital_source_type(mp4), read_digital_source_type(storage.get_bytes(reel.poster_key)))
        if not all(kind in AI_SOURCE_TYPES for kind in types):
            unlabelled.append(f"{reel.video_key}: video {types[0] or 'none'}, poster {types[1] or 'none'}")
    return [_result(PLATFORM_READY, unready, PLATFORM_READY_MEANING), _result(LABELLED, unlabelled, LABELLED_MEANING)]


def _result(name: str, problems: list[str], meaning: str) -> dg.AssetCheckResult:
    metadata: dict[str, object] = {"problems": len(problems)}
    if problems:
        metadata["examples"] = dg.MetadataValue.md("\n".join(f"- {problem}" for problem in problems[:10]))
    return dg.AssetCheckResult(check_name=name, passed=not problems, description=meaning, metadata=metadata)
