"""What a person sees in the UI: each reel's poster frame with its link, length, provider, job id and cost."""

from __future__ import annotations

import io

from PIL import Image

from modelcrew_assets.generated_reels.index import Reel
from modelcrew_assets.imaging import markdown_image
from modelcrew_assets.object_store import Storage

_SHOWN = 20
_THUMB = 160


def reels_table(storage: Storage, reels: tuple[Reel, ...]) -> str:
    if not reels:
        return "no reels in this batch yet"
    rows = [
        "| poster | reel | seconds | provider | job id | cost (USD) | motion | identity |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for reel in reels[:_SHOWN]:
        poster = Image.open(io.BytesIO(storage.get_bytes(reel.poster_key)))
        link = f"[{reel.video_key.rsplit('/', 1)[-1]}]({storage.uri(reel.video_key)})"
        rows.append(
            f"| {markdown_image(poster, reel.key, max_side=_THUMB, quality=70)} | {link} | {reel.duration_s:.1f} "
            f"| {reel.provider} {reel.provider_model} | {', '.join(reel.job_ids) or '-'} | {reel.cost_usd:.2f} "
            f"| {reel.motion} | {reel.identity:.2f} |"
        )
    if len(reels) > _SHOWN:
        rows.append(f"| | … {len(reels) - _SHOWN} more in index.json | | | | | | |")
    return "\n".join(rows)
