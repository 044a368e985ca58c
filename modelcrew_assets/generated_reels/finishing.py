"""From the provider's clip to the reel people post: 1080x1920 H.264 with the model's watermark (the exports'
[export] settings, kept clear of the Reels/TikTok UI zones), an optional music track from
uploads/<model>/music/, the AI label in XMP (and C2PA when signing is set) and a labelled poster JPEG."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field

from PIL import Image

from modelcrew_assets.generated_reels import ffmpeg
from modelcrew_assets.generated_reels.labels import reel_label, with_xmp
from modelcrew_assets.manifest import ModelSpec
from modelcrew_assets.object_store import Storage
from modelcrew_assets.platform_exports.labels import xmp_packet
from modelcrew_assets.platform_exports.platforms import VERTICAL_UI_BOTTOM, VERTICAL_UI_TOP
from modelcrew_assets.platform_exports.provenance import C2paSigning, sign_media
from modelcrew_assets.platform_exports.stage import export_settings
from modelcrew_assets.platform_exports.watermark import Watermark, stamp
from modelcrew_assets.storage_keys import upload_prefix

# Bump when the finishing code changes what the same settings produce, so reels are finished again.
FINISH_VERSION = "1"
MUSIC_SUFFIXES = (".mp3", ".m4a", ".aac", ".wav", ".ogg", ".flac")


@dataclass(frozen=True)
class FinishSettings:
    watermark: Watermark | None
    music_keys: tuple[str, ...]  # uploads/<model>/music/* in key order; empty: silent reels
    signing: C2paSigning | None = field(default=None, repr=False)

    def fingerprint(self, music_key: str | None) -> str:
        """Part of the finished file's name: other settings give another file (nothing is overwritten)."""
        mark = self.watermark
        settings = {
            "version": FINISH_VERSION,
            "watermark": None if mark is None else [mark.text, mark.position, mark.opacity, mark.margin, mark.width],
            "logo": hashlib.sha256(mark.logo_png).hexdigest() if mark and mark.logo_png else None,
            "music": music_key,
            "c2pa": hashlib.sha256(self.signing.cert_chain_pem).hexdigest() if self.signing else None,
        }
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]

    def music_for(self, reel_key: str) -> str | None:
        """The reel's track, picked from the model's music folder by the reel key (the same reel keeps it)."""
        if not self.music_keys:
            return None
        return self.music_keys[int(reel_key[:8], 16) % len(self.music_keys)]


@dataclass(frozen=True)
class FinishedReel:
    mp4: bytes
    poster_jpeg: bytes


def finish_settings(storage: Storage, spec: ModelSpec, signing: C2paSigning | None) -> FinishSettings:
    music: tuple[str, ...] = ()
    if spec.reels.music:
        prefix = f"{upload_prefix(spec.name)}music/"
        music = tuple(item.key for item in storage.list(prefix) if item.key.lower().endswith(MUSIC_SUFFIXES))
    return FinishSettings(export_settings(storage, spec).watermark, music, signing)


def finish(
    raw: bytes, duration_s: float, spec: ModelSpec, prompt: str, music: bytes | None, settings: FinishSettings
) -> FinishedReel:
    overlay = None if settings.watermark is None else _overlay(settings.watermark)
    label = reel_label(spec, prompt)
    metadata = {"title": f"{spec.name} reel", "comment": label.description, "artist": label.creator}
    mp4 = with_xmp(ffmpeg.finish_reel(raw, duration_s, overlay, music, metadata), label)
    if settings.signing is not None:
        mp4 = sign_media(mp4, "video/mp4", label, f"{spec.name} reel", settings.signing)
    poster = Image.open(io.BytesIO(ffmpeg.poster_frame(mp4, poster_time_s(duration_s))))
    buffer = io.BytesIO()
    poster.save(buffer, format="JPEG", quality=85, xmp=xmp_packet(label))
    return FinishedReel(mp4, buffer.getvalue())


def poster_time_s(duration_s: float) -> float:
    """Where the poster frame is taken (1 s in, past any fade-in); posting asks for the same cover frame."""
    return min(1.0, duration_s / 2)


def _overlay(watermark: Watermark) -> bytes:
    """The watermark on a transparent 1080x1920 frame, placed as on the 9:16 exports."""
    frame = Image.new("RGBA", ffmpeg.REEL_SIZE, (0, 0, 0, 0))
    stamp(frame, watermark, VERTICAL_UI_TOP, VERTICAL_UI_BOTTOM)
    buffer = io.BytesIO()
    frame.save(buffer, format="PNG")
    return buffer.getvalue()
