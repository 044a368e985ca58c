"""C2PA Content Credentials on reels when a signing certificate is set: the finished MP4 carries a valid
signed manifest with the AI source type, and its XMP label and video survive the signing."""

from __future__ import annotations

import io
import json
import shutil
import subprocess

import c2pa
import pytest
from PIL import Image

from modelcrew_assets.generated_reels import ffmpeg
from modelcrew_assets.generated_reels.finishing import FinishSettings, finish
from modelcrew_assets.generated_reels.labels import read_mp4_digital_source_type
from modelcrew_assets.manifest import parse_manifest
from modelcrew_assets.platform_exports.labels import TRAINED_ALGORITHMIC_MEDIA, read_digital_source_type
from modelcrew_assets.resources.c2pa_signing import C2paSigningResource
from modelcrew_assets_tests.builders import jpeg_bytes, manifest_text
from modelcrew_assets_tests.platform_export_images import throwaway_signing_certificate


def test_a_signed_reel_carries_a_valid_c2pa_manifest_with_the_ai_source_type_and_keeps_its_xmp(monkeypatch, tmp_path):
    monkeypatch.setattr(ffmpeg, "X264_PRESET", "ultrafast")
    chain, key = throwaway_signing_certificate()
    signing = C2paSigningResource(cert_chain_pem=chain, private_key_pem=key).signing()
    spec = parse_manifest(manifest_text("blondie", "blondie"), "uploads/blondie/model.toml")
    raw = ffmpeg.zoom_clip(jpeg_bytes(Image.new("RGB", (90, 160), (180, 120, 90))), 1, (180, 320), fps=12)

    made = finish(raw, 1, spec, "slow push-in", None, FinishSettings(None, (), signing))

    reader = c2pa.Reader("video/mp4", io.BytesIO(made.mp4))
    assert reader.get_validation_state() in ("Valid", "Trusted")
    manifest = reader.get_active_manifest()
    actions = [a for a in manifest["assertions"] if a["label"].startswith("c2pa.actions")]
    assert actions[0]["data"]["actions"][0]["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert manifest["title"] == "blondie reel" and manifest["signature_info"]["issuer"] == "modelcrew tests"
    assert read_mp4_digital_source_type(made.mp4) == TRAINED_ALGORITHMIC_MEDIA  # the XMP box survives signing
    (tmp_path / "reel.mp4").write_bytes(made.mp4)
    assert shutil.which("exiftool"), "exiftool missing: apt-get install libimage-exiftool-perl (scripts/test.sh does)"
    read = subprocess.run(["exiftool", "-j", "-G1", "-XMP:all", str(tmp_path / "reel.mp4")], capture_output=True)
    xmp = json.loads(read.stdout)[0]  # an independent reader of the XMP uuid box
    assert xmp["XMP-iptcExt:DigitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA and xmp["XMP-dc:Creator"] == "blondie"
    info = ffmpeg.probe(made.mp4)
    assert (info.width, info.height, info.codec) == (1080, 1920, "h264")
    assert info.duration_s == pytest.approx(1.0, abs=0.1)
    assert read_digital_source_type(made.poster_jpeg) == TRAINED_ALGORITHMIC_MEDIA
