"""Which stills become reels, and with what motion: per batch, the best renders by identity score (at or
above [reels].min_score) up to [reels].top_n reels, counting the reels the batch already has; a motion
phrase from the manifest's motion pack and a seed, both chosen from the still's hash (the same still always
gets the same motion and seed). Identity is scored here, as checkpoint_evaluations does it (dlib), against
the model's reference face, and cached per batch."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from PIL import Image, ImageOps

from modelcrew_assets.generated_reels.index import scores_key, stored_identity_scores
from modelcrew_assets.handoffs import GeneratedBatch, GeneratedImage, PlatformExports
from modelcrew_assets.imaging import decode_image, encode_jpeg
from modelcrew_assets.manifest import ModelSpec
from modelcrew_assets.object_store import Storage
from modelcrew_assets.storage_keys import face_prefix, is_image_name
from modelcrew_assets.worker.scoring import DlibEmbedder, ReferenceFaces, Sample

PROMPT_STILL_SIZE = (720, 1280)  # Runway gen4_turbo's portrait ratio; fal's models take it as it is


@dataclass(frozen=True)
class PlannedReel:
    key: str
    still: GeneratedImage
    identity: float
    motion: str
    prompt: str
    seed: int


def reel_key(still_sha256: str, motion: str, provider: str, model: str, duration: int) -> str:
    """What a paid job is cached by: the same still, motion, provider, model and length is never paid twice."""
    identity = json.dumps([still_sha256, motion, provider, model, duration])
    return hashlib.sha256(identity.encode()).hexdigest()[:20]


def motion_for(still_sha256: str, motions: tuple[str, ...]) -> tuple[str, int]:
    """The still's motion phrase and seed (0..2^32-1, Runway's range), chosen from its hash."""
    motion = motions[int(still_sha256[:8], 16) % len(motions)]
    seed = int(hashlib.sha256(f"{still_sha256}|{motion}".encode()).hexdigest()[:8], 16)
    return motion, seed


def video_prompt(still_prompt: str, motion: str, spec: ModelSpec) -> str:
    """The motion first (what the model is asked to do), then the still's scene without the trigger word,
    which means nothing to a video model."""
    trigger = spec.trigger.lower()
    scene = [part.strip() for part in still_prompt.split(",") if part.strip() and part.strip().lower() != trigger]
    text = ", ".join(scene).replace(spec.trigger, spec.model.class_word)
    return f"{motion[0].upper()}{motion[1:]}. {text}".strip()[:1000]


def plan_reels(
    spec: ModelSpec,
    batch: GeneratedBatch,
    exports: PlatformExports,
    scores: dict[str, float],
    animated: set[str],
    used: int,
    provider: str,
    model: str,
) -> list[PlannedReel]:
    """The batch's new reels: best score first, ties in image order; stills already animated (`animated`),
    rejected by platform_exports or under min_score are left out, and the batch's `used` reels count
    against top_n."""
    config = spec.reels
    rejected = {item.key for item in exports.rejected} if exports.batch_id == batch.batch_id else set()
    room = max(0, config.top_n - used)
    ranked = sorted(
        (image for image in batch.images if image.key not in animated and image.key not in rejected),
        key=lambda image: (-scores.get(image.sha256, 0.0), image.index),
    )
    planned = []
    for image in ranked:
        if len(planned) >= room or scores.get(image.sha256, 0.0) < config.min_score:
            break
        motion, seed = motion_for(image.sha256, config.motions)
        key = reel_key(image.sha256, motion, provider, model, config.duration)
        prompt = video_prompt(image.prompt, motion, spec)
        planned.append(PlannedReel(key, image, scores.get(image.sha256, 0.0), motion, prompt, seed))
    return planned


def identity_scores(storage: Storage, spec: ModelSpec, batch: GeneratedBatch) -> dict[str, float]:
    """Identity of every still of the batch against the reference face (sha256 -> score), cached in storage."""
    cache_key = scores_key(spec.name, batch.batch_id)
    cached = stored_identity_scores(storage, spec.name, batch.batch_id)
    missing = [image for image in batch.images if image.sha256 not in cached]
    if missing:
        faces = [
            (item.key, decode_image(storage.get_bytes(item.key), item.key))
            for item in storage.list(face_prefix(spec.name))
            if is_image_name(item.key)
        ]
        references = ReferenceFaces(DlibEmbedder(), faces, [])
        samples = [
            Sample(image.sha256, image.prompt, image.seed, decode_image(storage.get_bytes(image.key), image.key))
            for image in missing
        ]
        cached.update({score.id: score.identity for score in references.score(samples).samples})
        storage.put_bytes(cache_key, json.dumps(cached, indent=1, sort_keys=True).encode(), "application/json")
    return cached


def prompt_still(image: Image.Image) -> bytes:
    """The still as the provider gets it: centre-cropped to 9:16 and 720x1280, a JPEG well under 5 MB."""
    fitted = ImageOps.fit(image.convert("RGB"), PROMPT_STILL_SIZE, Image.Resampling.LANCZOS)
    return encode_jpeg(fitted, quality=90)
