"""The quality gate: pure measures (sharpness, near-duplicates) and the asset checks on a dry-run result set
(photos the filter would exclude are forced in here, so the checks have something to catch)."""

import dagster as dg
from PIL import Image, ImageFilter, ImageOps

from modelcrew_assets.definitions import defs
from modelcrew_assets.near_duplicates import dhash, find_near_duplicates, hamming
from modelcrew_assets.storage_keys import face_prefix, manifest_key, targets_prefix
from modelcrew_assets.swapped_faces import curation
from modelcrew_assets.swapped_faces.assets import swapped_faces
from modelcrew_assets.swapped_faces.checks import ONE_FACE, checks
from modelcrew_assets.swapped_faces.quality import MIN_SHARPNESS, face_count, sharpness
from modelcrew_assets.swapped_faces.simulated import SimulatedSwapResource
from modelcrew_assets_tests.builders import jpeg_bytes, manifest_text
from modelcrew_assets_tests.face_fixtures import one_person_photos


def test_sharpness_separates_a_sharp_photo_from_a_blurred_one(astronaut):
    assert sharpness(astronaut) > MIN_SHARPNESS > sharpness(astronaut.filter(ImageFilter.GaussianBlur(2)))


def test_near_duplicates_survive_resize_and_recompression_but_not_a_different_photo(astronaut):
    resized = astronaut.resize((300, 300)).point(lambda v: min(255, v + 4))
    different = ImageOps.mirror(astronaut).rotate(20)
    assert hamming(dhash(astronaut), dhash(resized)) <= 6
    pairs = find_near_duplicates([("a", astronaut), ("b", resized), ("c", different)])
    assert [(p.first, p.second) for p in pairs] == [("a", "b")]


def test_quality_checks_list_small_blurry_duplicate_and_two_face_photos_forced_in(
    instance, local_storage, astronaut, monkeypatch
):
    storage = local_storage
    decoded = []
    decode = curation.decode_image
    monkeypatch.setattr(curation, "decode_image", lambda data, name: decoded.append(name) or decode(data, name))
    forced = '[swap]\nforce_include = ["sharp.jpg", "sharp-twin.jpg", "blurry.jpg", "two-faces.jpg"]\n[dataset]\nmin_photos = 1\n'
    storage.put_bytes(manifest_key("blondie"), manifest_text(extra=forced).encode())
    storage.put_bytes(face_prefix("blondie") + "face.jpg", jpeg_bytes(astronaut))
    two_faces = Image.new("RGB", (1100, 600), "white")
    two_faces.paste(astronaut, (0, 40))
    two_faces.paste(ImageOps.mirror(astronaut).resize((480, 480)), (600, 60))
    targets = {
        "sharp.jpg": astronaut,
        "sharp-twin.jpg": astronaut.point(lambda v: min(255, v + 3)),
        # Soft (enlarged from 170 px) yet with a face dlib still finds, so it is swapped and then checked.
        "blurry.jpg": ImageOps.mirror(astronaut).resize((170, 170)).resize((512, 512), Image.Resampling.BILINEAR),
        "two-faces.jpg": two_faces,
    }
    for name, image in targets.items():
        storage.put_bytes(targets_prefix("blondie") + name, jpeg_bytes(image))
    instance.add_dynamic_partitions("models", ["blondie"])
    result = dg.materialize(
        [swapped_faces, *checks],
        partition_key="blondie",
        instance=instance,
        resources={"storage": storage, "face_swaps": SimulatedSwapResource()},
        raise_on_error=False,
    )
    assert result.success, "a person forced them in: the checks say what is wrong, nothing blocks"
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    offenders = {name: e.metadata["offenders"].value for name, e in evaluations.items() if "offenders" in e.metadata}

    resolution = evaluations["swapped_faces_meet_sdxl_resolution"]
    assert len(decoded) == len(set(decoded)) == resolution.metadata["checked"].value, "measured once, in the asset"
    assert not resolution.passed and resolution.severity == dg.AssetCheckSeverity.WARN
    assert "sharp.jpg: 512x512" in offenders["swapped_faces_meet_sdxl_resolution"]
    assert not evaluations["swapped_faces_are_sharp"].passed
    assert (
        "blurry.jpg" in offenders["swapped_faces_are_sharp"] and "sharp.jpg" not in offenders["swapped_faces_are_sharp"]
    )
    assert not evaluations["swapped_faces_have_no_near_duplicates"].passed
    pairs = offenders["swapped_faces_have_no_near_duplicates"]
    assert pairs.startswith("- uploads/blondie/targets/sharp-twin.jpg ~ uploads/blondie/targets/sharp.jpg (distance")
    one_face = evaluations["swapped_faces_have_one_face_each"]
    assert not one_face.passed and not one_face.blocking, "the filter, not this check, keeps such photos out"
    assert offenders["swapped_faces_have_one_face_each"].strip() == (
        "- uploads/blondie/targets/two-faces.jpg: 2 faces (forced in)"
    )


def test_one_person_photos_over_busy_backgrounds_have_one_face_each():
    # Haar + the same prominence rule counted 2-3 faces in 5 of these 12 (speckle, coffee, cat, slide, ...).
    counts = {name: face_count(image) for name, image in one_person_photos()}
    assert counts == {name: 1 for name in counts}


def test_one_face_check_passes_on_swapped_photos_over_busy_backgrounds(instance, local_storage, astronaut):
    storage = local_storage
    storage.put_bytes(manifest_key("blondie"), manifest_text().encode())
    storage.put_bytes(face_prefix("blondie") + "face.jpg", jpeg_bytes(astronaut))
    for name, image in one_person_photos()[:6]:
        storage.put_bytes(targets_prefix("blondie") + f"{name}.jpg", jpeg_bytes(image))
    instance.add_dynamic_partitions("models", ["blondie"])
    # The gate is one multi-asset check; this selects only its one-face check from it.
    one_face = dg.AssetCheckKey(dg.AssetKey("swapped_faces"), ONE_FACE)
    result = dg.materialize(
        [swapped_faces, *checks],
        selection=dg.AssetSelection.assets(swapped_faces).without_checks() | dg.AssetSelection.checks(one_face),
        partition_key="blondie",
        instance=instance,
        resources={"storage": storage, "face_swaps": SimulatedSwapResource()},
        raise_on_error=False,
    )
    evaluation = result.get_asset_check_evaluations()[0]
    assert evaluation.metadata["checked"].value == 6
    assert evaluation.passed, evaluation.metadata["offenders"].value
    assert result.success


def test_definitions_load_with_the_five_named_checks():
    defs.resolve_all_job_defs()
    names = {key.name for key in defs.resolve_asset_graph().asset_check_keys if key.asset_key.path == ["swapped_faces"]}
    assert names == {
        "swapped_faces_meet_sdxl_resolution",
        "swapped_faces_are_sharp",
        "swapped_faces_have_no_near_duplicates",
        "swapped_faces_have_one_face_each",
        "swapped_faces_leave_enough_usable_photos",
    }
