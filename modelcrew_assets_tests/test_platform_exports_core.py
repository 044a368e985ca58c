"""The pure export core: exact sizes, face-aware crops, watermark, AI labels, metadata hygiene, odd inputs."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageChops

from modelcrew_assets.face_detection import detect_faces
from modelcrew_assets.imaging import ImageInputError
from modelcrew_assets.platform_exports.crop import plan_crop
from modelcrew_assets.platform_exports.labels import (
    COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA,
    TRAINED_ALGORITHMIC_MEDIA,
    AiLabel,
    read_digital_source_type,
    read_xmp_label,
)
from modelcrew_assets.platform_exports.platforms import BUILTIN_PLATFORMS, Platform
from modelcrew_assets.platform_exports.pool import export_many
from modelcrew_assets.platform_exports.render import ExportSettings, SourceImage, render_source
from modelcrew_assets.platform_exports.source_decode import decode
from modelcrew_assets.platform_exports.watermark import Watermark
from modelcrew_assets_tests.platform_export_images import (
    SRGB_BLUE,
    SRGB_GREEN,
    SRGB_RED,
    encode,
    exif_with_gps_and_camera,
    rgb_icc_profile,
)

PLATFORMS = tuple(BUILTIN_PLATFORMS.values())
LABEL = AiLabel(TRAINED_ALGORITHMIC_MEDIA, "blondie", "AI-generated image of blondie", ("AI-generated", "blondie"))


def export(data: bytes, platforms=PLATFORMS, watermark: Watermark | None = None, label: AiLabel = LABEL, face_box=None):
    source = SourceImage("test.png", data, label, face_box)
    return render_source(source, ExportSettings(tuple(platforms), watermark=watermark))


def on_canvas(face: Image.Image, size: tuple[int, int], at: tuple[int, int]) -> Image.Image:
    canvas = Image.linear_gradient("L").resize(size).convert("RGB")
    canvas.paste(face, at)
    return canvas


def exiftool(jpeg: bytes, tmp_path: Path, *tags: str) -> dict:
    assert shutil.which("exiftool"), "exiftool missing: apt-get install libimage-exiftool-perl (scripts/test.sh does)"
    path = tmp_path / "export.jpg"
    path.write_bytes(jpeg)
    output = subprocess.run(["exiftool", "-j", "-G1", "-a", *tags, str(path)], capture_output=True, check=True)
    return json.loads(output.stdout)[0]


@pytest.mark.parametrize("size", [(512, 512), (1024, 1024), (768, 1344), (6000, 4000), (900, 2400)])
def test_every_output_has_exactly_its_platform_size(size):
    custom = Platform("banner", 1500, 500)
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    rendered = export(encode(image, "JPEG"), (*PLATFORMS, custom))
    assert [(r.platform, Image.open(io.BytesIO(r.jpeg)).size) for r in rendered] == [
        (p.name, p.size) for p in (*PLATFORMS, custom)
    ]


@pytest.mark.parametrize("canvas, at", [((512, 512), (0, 0)), ((1600, 1000), (1080, 40)), ((1200, 1800), (40, 1250))])
def test_astronauts_face_stays_inside_every_crop_and_out_of_the_9_16_ui_zones(astronaut, canvas, at):
    rendered = export(encode(on_canvas(astronaut, canvas, at), "PNG"))
    for output in rendered:
        image = Image.open(io.BytesIO(output.jpeg))
        faces = detect_faces(image)
        assert faces, f"{output.platform}: no face in the export"
        face = faces[0]
        assert output.plan.strategy == "face" and output.plan.face_kept
        assert face.x >= 0 and face.x + face.width <= image.width
        top_ui = BUILTIN_PLATFORMS[output.platform].ui_top * image.height
        bottom_ui = (1 - BUILTIN_PLATFORMS[output.platform].ui_bottom) * image.height
        assert top_ui <= face.y and face.y + face.height <= bottom_ui, (output.platform, face, top_ui, bottom_ui)


def test_face_near_the_top_is_zoomed_in_until_it_clears_the_ui_band():
    story = BUILTIN_PLATFORMS["tiktok"]
    plan = plan_crop((1000, 1000), story, face=(400, 120, 500, 220))
    left, top, right, bottom = plan.box
    assert plan.face_kept and bottom - top < 1000
    assert 120 >= top + 0.12 * (bottom - top) and 220 <= top + 0.8 * (bottom - top)
    assert right - left == pytest.approx((bottom - top) * 1080 / 1920)


def test_face_at_the_very_edge_is_kept_in_frame_and_flagged_not_clear_of_the_ui():
    plan = plan_crop((1000, 1000), BUILTIN_PLATFORMS["tiktok"], face=(400, 0, 500, 60))
    assert plan.face_kept is False
    assert plan.box[1] == 0 and plan.box[3] == 1000


def test_a_render_only_cropped_to_a_platform_is_not_exported_where_the_crop_would_cut_the_face():
    grey = encode(Image.new("RGB", (1000, 1000), (128, 128, 128)), "PNG")
    tiktok, square = BUILTIN_PLATFORMS["tiktok"], BUILTIN_PLATFORMS["instagram_square"]
    serves = (("tiktok", "cropped"), ("instagram_square", "native"))
    source = SourceImage("edge.png", grey, LABEL, face_box=(400, 0, 100, 60), serves=serves)
    [only] = render_source(source, ExportSettings(platforms=(tiktok, square)))
    assert (only.platform, only.fit) == ("instagram_square", "native")
    centred = dataclasses.replace(source, face_box=(450, 400, 100, 120))
    assert [(r.platform, r.fit) for r in render_source(centred, ExportSettings(platforms=(tiktok, square)))] == [
        ("tiktok", "cropped"),
        ("instagram_square", "native"),
    ]


@pytest.mark.parametrize(
    ("size", "face"),
    [
        ((768, 1152), (530.73, 286.07, 549.71, 749.52)),
        ((1152, 768), (675.33, 80.35, 732.66, 131.29)),
        ((640, 640), (439.59, 144.34, 627.46, 376.52)),
    ],
)
def test_face_crops_never_reach_outside_the_image_by_a_rounding_error(size, face):
    """Found by the pipeline benchmark: Pillow refused a box at y = -1.4e-14 ("box offset can't be negative")."""
    left, top, right, bottom = plan_crop(size, BUILTIN_PLATFORMS["tiktok"], face=face).box
    assert left >= 0 and top >= 0 and right <= size[0] and bottom <= size[1]
    Image.new("RGB", size).resize((108, 192), box=(left, top, right, bottom))


def test_without_a_face_the_crop_follows_detail_then_falls_back_to_the_centre():
    feed = BUILTIN_PLATFORMS["instagram_feed"]
    detailed = np.zeros((100, 300))
    detailed[:, 240:290] = 50.0
    plan = plan_crop((3000, 1000), feed, detail=detailed)
    assert plan.strategy == "detail" and plan.box[0] <= 2400 and plan.box[2] >= 2900
    flat = plan_crop((3000, 1000), feed, detail=np.ones((100, 300)))
    assert flat.strategy == "centre" and flat.box[0] == pytest.approx((3000 - 800) / 2)


def test_watermark_is_drawn_in_its_region_and_nowhere_else():
    source = encode(Image.new("RGB", (1200, 1200), (40, 90, 160)), "PNG")
    plain = export(source, [BUILTIN_PLATFORMS["instagram_square"]])[0]
    marked = export(source, [BUILTIN_PLATFORMS["instagram_square"]], Watermark(text="@blondie"))[0]
    difference = ImageChops.difference(*(Image.open(io.BytesIO(r.jpeg)).convert("L") for r in (plain, marked)))
    left, top, right, bottom = marked.watermark_box
    inside = np.asarray(difference.crop((left, top, right, bottom)))
    outside = np.asarray(difference).copy()
    outside[max(0, top - 8) : bottom + 8, max(0, left - 8) : right + 8] = 0
    assert inside.max() > 100 and (inside > 40).mean() > 0.1
    assert outside.max() < 12
    assert right > 1080 * 0.6 and bottom > 1080 * 0.8  # bottom-right by default


@pytest.mark.parametrize("mark", [Watermark(text="@blondie"), Watermark(logo_png=b"logo")], ids=["text", "logo"])
def test_watermark_is_scaled_to_the_image_width(mark):
    if mark.logo_png:
        logo = Image.new("RGBA", (400, 100), (255, 255, 255, 0))
        logo.paste((255, 0, 0, 255), (20, 20, 380, 80))
        mark = Watermark(logo_png=encode(logo, "PNG"))
    source = encode(Image.new("RGB", (2000, 2000), (30, 30, 30)), "PNG")
    small, large = export(source, [Platform("small", 540, 540), Platform("large", 1080, 1080)], mark)
    small_width = small.watermark_box[2] - small.watermark_box[0]
    large_width = large.watermark_box[2] - large.watermark_box[0]
    assert large_width == pytest.approx(0.22 * 1080, rel=0.06)
    assert small_width / large_width == pytest.approx(0.5, rel=0.06)


def test_watermark_on_9_16_sits_above_the_bottom_ui_zone():
    source = encode(Image.new("RGB", (1080, 1920), (200, 200, 200)), "PNG")
    story = export(source, [BUILTIN_PLATFORMS["tiktok"]], Watermark(text="@blondie", position="bottom-left"))[0]
    assert story.watermark_box[3] <= 1920 * 0.8 and story.watermark_box[0] < 100


def test_exiftool_reads_the_ai_labels_from_the_export(tmp_path):
    jpeg = export(encode(Image.new("RGB", (800, 800), "white"), "PNG"))[0].jpeg
    tags = exiftool(jpeg, tmp_path)
    assert tags["XMP-iptcExt:DigitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert tags["XMP-dc:Creator"] == "blondie"
    assert tags["XMP-dc:Description"] == "AI-generated image of blondie"
    assert tags["XMP-dc:Subject"] == ["AI-generated", "blondie"]
    assert read_digital_source_type(jpeg) == TRAINED_ALGORITHMIC_MEDIA


def test_dry_run_exports_say_so_in_xmp_and_in_their_pixels_after_any_crop(tmp_path):
    grey = encode(Image.new("RGB", (1200, 800), (128, 128, 128)), "PNG")
    dry = dataclasses.replace(LABEL, dry_run=True)
    for real, simulated in zip(export(grey), export(grey, label=dry), strict=True):
        assert exiftool(simulated.jpeg, tmp_path)["XMP-xmp:Label"] == "dry-run"
        assert read_xmp_label(simulated.jpeg) == "dry-run" and read_xmp_label(real.jpeg) is None
        # The banner is drawn on every platform's crop: the top-left corner differs from the plain export.
        corner = (0, 0, simulated.width // 2, simulated.height // 5)
        plain, marked = (Image.open(io.BytesIO(e.jpeg)).convert("L").crop(corner) for e in (real, simulated))
        assert max(marked.getdata()) > max(plain.getdata()) + 60, simulated.platform


def test_face_swapped_photos_are_labelled_as_composites(tmp_path):
    label = AiLabel(COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA, "studio", "face-swapped photo")
    jpeg = export(encode(Image.new("RGB", (800, 800), "white"), "PNG"), label=label)[0].jpeg
    assert exiftool(jpeg, tmp_path)["XMP-iptcExt:DigitalSourceType"] == COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA


def test_no_gps_or_camera_exif_survives(tmp_path):
    source = encode(Image.new("RGB", (1200, 900), "gray"), "JPEG", exif=exif_with_gps_and_camera())
    assert exiftool(source, tmp_path, "-GPS:all")  # the input does carry GPS
    for output in export(source):
        tags = exiftool(output.jpeg, tmp_path)
        assert not [tag for tag in tags if tag.startswith(("GPS", "IFD0", "ExifIFD", "Composite:GPS"))], tags
        assert not Image.open(io.BytesIO(output.jpeg)).getexif()


def test_exports_are_progressive_srgb_jpegs(tmp_path):
    output = export(encode(Image.new("RGB", (800, 800), "white"), "PNG"))[0]
    image = Image.open(io.BytesIO(output.jpeg))
    assert image.format == "JPEG" and image.mode == "RGB" and image.info.get("progressive")


def test_embedded_icc_profiles_are_converted_to_srgb():
    swapped = rgb_icc_profile(SRGB_GREEN, SRGB_RED, SRGB_BLUE)  # "red" in this space is sRGB green
    source = encode(Image.new("RGB", (600, 600), (255, 0, 0)), "PNG", icc_profile=swapped)
    pixel = decode(source, "tagged.png", 1.0).image.getpixel((10, 10))
    assert pixel[1] > 200 and pixel[0] < 60


def test_cmyk_jpeg_is_exported_in_rgb():
    source = encode(Image.new("CMYK", (600, 600), (0, 255, 255, 0)), "JPEG")
    image = Image.open(io.BytesIO(export(source)[0].jpeg))
    red, green, blue = image.convert("RGB").getpixel((540, 100))
    assert image.mode == "RGB" and red > 200 and green < 60 and blue < 60


def test_16_bit_input_is_scaled_down_not_clipped_to_white():
    values = np.tile(np.linspace(0, 65535, 600, dtype=np.uint16), (600, 1))
    for data in (encode(Image.fromarray(values), "PNG"), encode(Image.fromarray(values), "TIFF")):
        image = decode(data, "16bit", 1.0).image
        assert image.mode == "RGB"
        assert image.getpixel((300, 300))[0] == pytest.approx(127, abs=3)


def test_palette_image_with_transparency_gets_a_white_background():
    palette = Image.new("P", (600, 600), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.paste(1, (300, 0, 600, 600))
    data = encode(palette, "PNG", transparency=0)
    image = decode(data, "logo.png", 1.0).image
    assert image.getpixel((10, 10)) == (255, 255, 255) and image.getpixel((500, 10)) == (255, 0, 0)


def test_exif_rotated_photo_is_exported_upright():
    stored = Image.new("RGB", (1200, 800), "white")
    stored.paste((255, 0, 0), (0, 0, 500, 800))  # orientation 6: the stored left edge is the upright top
    source = encode(stored, "JPEG", exif=exif_with_gps_and_camera(orientation=6))
    working = decode(source, "rotated.jpg", 1.0)
    assert working.image.size == (800, 1200) and working.source_size == (800, 1200)
    assert working.image.getpixel((400, 20))[1] < 60 and working.image.getpixel((400, 1100))[1] > 200
    feed = export(source, [BUILTIN_PLATFORMS["instagram_feed"]])[0]
    top = Image.open(io.BytesIO(feed.jpeg)).getpixel((540, 10))
    assert top[0] > 200 and top[1] < 60


def test_large_jpeg_is_decoded_at_a_reduced_scale():
    data = encode(Image.new("RGB", (6000, 4000), "gray"), "JPEG")
    working = decode(data, "big.jpg", 0.48)
    assert working.image.size == (3000, 2000) and working.source_size == (6000, 4000)


@pytest.mark.parametrize(
    "data, message",
    [
        (encode(Image.new("RGB", (200, 900)), "PNG"), "200x900 is too small to export"),
        (b"", "the file is empty"),
        (b"not an image at all", "not an image Pillow can read"),
        (encode(Image.new("RGB", (600, 600)), "GIF"), "GIF is not supported"),
    ],
    ids=["tiny", "empty", "garbage", "gif"],
)
def test_unusable_inputs_are_rejected_with_a_clear_error(data, message):
    with pytest.raises(ImageInputError, match=message) as error:
        export(data)
    assert "test.png" in str(error.value)


def test_worker_pool_keeps_input_order_and_reports_bad_images_without_stopping():
    good = encode(Image.new("RGB", (400, 400), (200, 30, 30)), "PNG")
    sources = [SourceImage(name, data, LABEL) for name, data in [("a.png", good), ("b.png", b"junk"), ("c.png", good)]]
    outcomes = list(export_many(sources, ExportSettings((BUILTIN_PLATFORMS["instagram_square"],)), workers=2))
    assert [outcome.source.name for outcome in outcomes] == ["a.png", "b.png", "c.png"]
    assert [bool(outcome.rendered) for outcome in outcomes] == [True, False, True]
    assert outcomes[1].error.startswith("b.png: not an image Pillow can read")
