"""Where a finished swap goes: `models/<m>/swapped_faces/<sha>.jpg` plus a `<sha>.json` provenance
sidecar, and what the run reports per target."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from PIL import Image

from modelcrew_assets.face_detection import FaceBox
from modelcrew_assets.handoffs import SwappedFace
from modelcrew_assets.imaging import encode_jpeg
from modelcrew_assets.object_store import Storage
from modelcrew_assets.resources.storage_backends import sha256_hex
from modelcrew_assets.storage_keys import asset_prefix
from modelcrew_assets.swapped_faces.inputs import ASSET, SwapInput
from modelcrew_assets.swapped_faces.ledger import LedgerRecord

Status = Literal["swapped", "cached", "no_face", "failed", "needs_attention"]


@dataclass(frozen=True)
class TargetOutcome:
    target_key: str
    status: Status
    reason: str | None = None
    result: SwappedFace | None = None
    jobs_created: int = 0
    job_ids: tuple[str, ...] = ()
    duplicates: tuple[str, ...] = ()

    @property
    def succeeded(self) -> bool:
        return self.status in ("swapped", "cached")


def store_result(
    storage: Storage,
    record: LedgerRecord,
    target: SwapInput,
    face: SwapInput,
    image: Image.Image,
    boxes: list[FaceBox],
    timings: dict[str, float],
    simulated: bool,
) -> SwappedFace:
    """Write the JPEG (content-addressed) and its sidecar, labelled dry_run when `simulated`; returns the
    index entry."""
    data = encode_jpeg(image)
    sha = sha256_hex(data)
    key = f"{asset_prefix(record.model, ASSET)}{sha}.jpg"
    storage.put_bytes(key, data, "image/jpeg")
    box = _scaled(boxes[0], target.image.size, image.size) if boxes else None
    swapped = SwappedFace(
        key=key,
        sha256=sha,
        target_key=target.key,
        target_sha256=target.sha256,
        face_box=box.as_tuple() if box else None,
        width=image.width,
        height=image.height,
    )
    sidecar = {
        **swapped.model_dump(mode="json"),
        "face_key": face.key,
        "face_sha256": face.sha256,
        "cache_key": record.cache_key,
        "options": record.options.model_dump(mode="json"),
        "target_face_boxes": [list(b.as_tuple()) for b in boxes],
        "provider": record.options.provider,
        "swap_job_ids": [job.job_id for job in record.swap_jobs],
        "enhance_job_ids": [job.job_id for job in record.enhance_jobs],
        "timings_s": {name: round(value, 3) for name, value in timings.items()},
        "dry_run": simulated,
    }
    storage.put_bytes(key[: -len(".jpg")] + ".json", json.dumps(sidecar, indent=2).encode(), "application/json")
    return swapped


def _scaled(box: FaceBox, source: tuple[int, int], result: tuple[int, int]) -> FaceBox:
    """The target's face box in the result's pixels (providers may return another size)."""
    sx, sy = result[0] / source[0], result[1] / source[1]
    return FaceBox(round(box.x * sx), round(box.y * sy), round(box.width * sx), round(box.height * sy))
