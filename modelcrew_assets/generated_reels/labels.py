"""AI-content labels on reels: the exports' XMP packet (IPTC DigitalSourceType = trainedAlgorithmicMedia,
creator, description, keywords) in the MP4, where the XMP specification (part 3) puts it for ISO base media
files: a top-level `uuid` box with XMP's UUID, which exiftool and Adobe's tools read. Appended after the
other boxes, so the moov/mdat offsets faststart wrote stay valid. C2PA, when a signing certificate is
configured, is provenance.sign_media with video/mp4 (finishing.py)."""

from __future__ import annotations

import re
import struct
import uuid

from modelcrew_assets.manifest import ModelSpec
from modelcrew_assets.platform_exports.labels import TRAINED_ALGORITHMIC_MEDIA, AiLabel, xmp_packet
from modelcrew_assets.platform_exports.post_text import hashtags

XMP_UUID = uuid.UUID("be7acfcb-97a9-42e8-9c71-999491e3afac").bytes
_SOURCE_TYPE = re.compile(rb'Iptc4xmpExt:DigitalSourceType="([^"]*)"')


def reel_label(spec: ModelSpec, prompt: str) -> AiLabel:
    description = f"AI-generated video of {spec.name}, a virtual persona, made with modelcrew. Prompt: {prompt}"
    keywords = ("AI-generated", "synthetic media", spec.name, *(tag.lstrip("#") for tag in hashtags(spec)))
    return AiLabel(
        TRAINED_ALGORITHMIC_MEDIA, spec.export.creator or spec.name, description, tuple(dict.fromkeys(keywords))
    )


def with_xmp(mp4: bytes, label: AiLabel) -> bytes:
    payload = XMP_UUID + xmp_packet(label)
    return mp4 + struct.pack(">I4s", 8 + len(payload), b"uuid") + payload


def read_mp4_xmp(mp4: bytes) -> bytes | None:
    """The XMP packet in a top-level uuid box, or None."""
    offset = 0
    while offset + 8 <= len(mp4):
        size, kind = struct.unpack(">I4s", mp4[offset : offset + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", mp4[offset + 8 : offset + 16])[0], 16
        elif size == 0:
            size = len(mp4) - offset
        if size < header:
            return None  # not an ISO base media file, or a damaged one
        if kind == b"uuid" and mp4[offset + header : offset + header + 16] == XMP_UUID:
            return mp4[offset + header + 16 : offset + size]
        offset += size
    return None


def read_mp4_digital_source_type(mp4: bytes) -> str | None:
    xmp = read_mp4_xmp(mp4)
    match = _SOURCE_TYPE.search(xmp) if xmp else None
    return match.group(1).decode() if match else None
