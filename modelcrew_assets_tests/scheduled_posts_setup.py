"""Test inputs for scheduled_posts: a model with [posting], exported batches and reels, and the run itself."""

from __future__ import annotations

import hashlib

import dagster as dg
from PIL import Image

from modelcrew_assets.generated_reels.ffmpeg import zoom_clip
from modelcrew_assets.generated_reels.index import GeneratedReels, Reel
from modelcrew_assets.handoffs import GeneratedBatch, GeneratedImage, PlatformExport, PlatformExports, write_index
from modelcrew_assets.resources.buffer import BufferResource
from modelcrew_assets.resources.captioner import CaptionServiceResource, SimulatedCaptionerResource
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.scheduled_posts.assets import scheduled_posts
from modelcrew_assets.scheduled_posts.posting import PostingServiceResource
from modelcrew_assets.storage_keys import manifest_key
from modelcrew_assets_tests.builders import jpeg_bytes, manifest_text
from modelcrew_assets_tests.fakes.buffer import FAKE_BUFFER_KEY, FakeBuffer

MODEL = "blondie"
PUBLIC_BASE = "https://cdn.example.com/modelcrew"
POSTING = """
[posting]
timezone = "Europe/Berlin"
start_date = 2030-01-01
max_per_day = 2
mode = "{mode}"
channels.instagram_feed = {{service = "instagram", name = "blondie"}}
channels.tiktok = {{id = "ch-tiktok"}}
slots.instagram_feed = ["09:00", "18:30"]
slots.tiktok = ["12:00"]
"""
PLATFORMS = ("instagram_feed", "tiktok")


def upload_manifest(storage: StorageResource, mode: str = "draft", posting: str | None = None) -> None:
    extra = POSTING.format(mode=mode) if posting is None else posting
    storage.put_bytes(
        manifest_key(MODEL), manifest_text(MODEL, MODEL, extra='[export]\nhashtags = ["fashion"]\n' + extra).encode()
    )


def source_sha256(source_key: str) -> str:
    """A stand-in for the generated image's content hash: one per image."""
    return hashlib.sha256(source_key.encode()).hexdigest()


def export_batch(storage: StorageResource, batch_id: str, images: int = 2, dry_run: bool = False) -> PlatformExports:
    """What generated_batches and platform_exports hand over: one JPEG per image and platform."""
    generated, exports = [], []
    for index in range(images):
        source_key = f"models/{MODEL}/generated_batches/{batch_id}/{index:04d}.png"
        generated.append(
            GeneratedImage(
                key=source_key,
                sha256=source_sha256(source_key),
                prompt=f"{MODEL}, walking in a park number {index}, 85mm photo",
                negative_prompt="",
                seed=index,
                width=64,
                height=64,
                checkpoint_sha256="1" * 64,
                index=index,
            )
        )
        for platform in PLATFORMS:
            data = jpeg_bytes(Image.new("RGB", (54, 96 if platform == "tiktok" else 68), (40 * index, 90, 160)))
            key = f"models/{MODEL}/platform_exports/{batch_id}/{platform}/{index:04d}-{batch_id[:6]}{index:06d}.jpg"
            storage.put_bytes(key, data, "image/jpeg")
            exports.append(
                PlatformExport(
                    key=key,
                    platform=platform,
                    width=54,
                    height=68,
                    sha256=hashlib.sha256(data).hexdigest(),
                    source_key=source_key,
                    source_sha256=source_sha256(source_key),
                    digital_source_type="http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia",
                    crop="centre",
                )
            )
    write_index(storage, GeneratedBatch(model=MODEL, batch_id=batch_id, images=tuple(generated), dry_run=dry_run))
    index = PlatformExports(
        model=MODEL,
        batch_id=batch_id,
        settings_fingerprint="f" * 64,
        exports=tuple(exports),
        manifests=(),
        dry_run=dry_run,
    )
    write_index(storage, index)
    return index


def export_reel(storage: StorageResource, batch_id: str, image: int, identity: float = 0.6) -> Reel:
    """What generated_reels hands over: one finished reel (a real, tiny MP4) and its poster, from one still."""
    poster = jpeg_bytes(Image.new("RGB", (36, 64), (200, 90, 40)))
    video = zoom_clip(poster, 1.0, (36, 64), fps=4)
    key = hashlib.sha256(f"{batch_id}-{image}".encode()).hexdigest()[:20]
    stem = f"models/{MODEL}/generated_reels/{key}-0f0f0f0f"
    storage.put_bytes(f"{stem}.mp4", video, "video/mp4")
    storage.put_bytes(f"{stem}.jpg", poster, "image/jpeg")
    reel = Reel(
        key=key, batch_id=batch_id, video_key=f"{stem}.mp4", poster_key=f"{stem}.jpg", poster_at_s=0.5,
        video_sha256=hashlib.sha256(video).hexdigest(), still_key=f"models/{MODEL}/generated_batches/{batch_id}/{image:04d}.png",
        still_sha256="0" * 64, identity=identity, motion="slow push-in", prompt="Slow push-in. walking in a park",
        still_prompt=f"{MODEL}, walking in a park number {image}, 85mm photo", seed=1, provider="runway",
        provider_model="gen4_turbo", paid_seconds=1, duration_s=1.0, width=36, height=64, job_ids=("task-1",),
        cost_usd=0.05, digital_source_type="http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia",
    )  # fmt: skip
    write_index(storage, GeneratedReels(model=MODEL, batch_id=batch_id, reels=(reel,)))
    return reel


def live_buffer(fake: FakeBuffer, **settings: object) -> BufferResource:
    defaults: dict[str, object] = {
        "api_key": FAKE_BUFFER_KEY,
        "api_url": fake.url,
        "public_media_base_url": PUBLIC_BASE,
        "read_timeout_s": 0.5,
        "retry_base_delay_s": 0.0,
        "retry_max_delay_s": 0.0,
    }
    return BufferResource(**{**defaults, **settings})


def materialize(
    instance: dg.DagsterInstance,
    storage: StorageResource,
    posting: PostingServiceResource,
    raise_on_error: bool = True,
    captioner: CaptionServiceResource | None = None,
) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions("models", [MODEL])
    return dg.materialize(
        [scheduled_posts],
        partition_key=MODEL,
        instance=instance,
        resources={"storage": storage, "posting": posting, "captioner": captioner or SimulatedCaptionerResource()},
        raise_on_error=raise_on_error,
    )


def metadata_of(result: dg.ExecuteInProcessResult) -> dict:
    return result.asset_materializations_for_node("scheduled_posts")[0].metadata
