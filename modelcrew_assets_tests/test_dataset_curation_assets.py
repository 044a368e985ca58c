"""Filter, then gate, through the assets: 3 bad photos of 20 leave the training set and the run goes on with
17 (captions, and so the kohya zip, use only those); with 4 usable photos it stops, saying what to fix."""

import dagster as dg
import pytest
from PIL import Image, ImageFilter, ImageOps

from modelcrew_assets.captions.assets import captions
from modelcrew_assets.handoffs import Captions, SwappedFaces, read_index
from modelcrew_assets.resources.captioner import SimulatedCaptionerResource
from modelcrew_assets.storage_keys import targets_prefix
from modelcrew_assets.swapped_faces.assets import swapped_faces
from modelcrew_assets.swapped_faces.checks import ENOUGH_USABLE, checks
from modelcrew_assets.swapped_faces.simulated import SimulatedSwapResource
from modelcrew_assets_tests.builders import jpeg_bytes, upload_model
from modelcrew_assets_tests.face_fixtures import paste_person, speckle

MODEL = "blondie"
SIDE = 512


def one_face_photo(seed: int) -> Image.Image:
    """A distinct one-person photo: the astronaut over its own random speckle, at its own size and place."""
    height = 300 + 10 * (seed % 5)
    x = (SIDE - height) // 2 + (-90, 90, 0, -45, 45)[seed % 5]
    return paste_person(speckle((SIDE, SIDE), 6 + seed % 4, seed), height, x)


def bad_photos(good: Image.Image) -> dict[str, Image.Image]:
    plain = Image.new("RGB", (SIDE, SIDE), (120, 140, 160))
    two = paste_person(paste_person(speckle((SIDE * 2, SIDE), 8, 99), 330, 60), 330, SIDE + 60)
    return {
        "bad-blurry.jpg": paste_person(plain, 340, 90).filter(ImageFilter.GaussianBlur(1.5)),
        "bad-two-people.jpg": two,
        "twin-of-good-00.jpg": ImageOps.autocontrast(good, cutoff=1).point(lambda v: min(255, v + 3)),
    }


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    good = {f"good-{seed:02d}.jpg": one_face_photo(seed) for seed in range(17)}
    return {**good, **bad_photos(good["good-00.jpg"])}


def upload(storage, astronaut, photos: dict[str, Image.Image]) -> None:
    upload_model(storage, astronaut, MODEL, targets=0)
    for name, image in photos.items():
        storage.put_bytes(targets_prefix(MODEL) + name, jpeg_bytes(image, quality=92))


def materialize(instance, storage, assets):
    instance.add_dynamic_partitions("models", [MODEL])
    return dg.materialize(
        [swapped_faces, *checks, *assets],
        partition_key=MODEL,
        instance=instance,
        resources={
            "storage": storage,
            "face_swaps": SimulatedSwapResource(),
            "captioner": SimulatedCaptionerResource(),
        },
        raise_on_error=False,
    )


def test_three_bad_photos_of_twenty_are_excluded_and_the_run_continues_with_seventeen(
    instance, local_storage, astronaut, photos
):
    upload(local_storage, astronaut, photos)
    result = materialize(instance, local_storage, [captions])
    assert result.success

    index = read_index(local_storage, MODEL, SwappedFaces)
    excluded = {v.target_key.rsplit("/", 1)[-1]: v for v in index.verdicts if not v.usable}
    assert {name: v.reasons for name, v in excluded.items()} == {
        "bad-blurry.jpg": ("blurry",),
        "bad-two-people.jpg": ("several_faces",),
        "good-00.jpg": ("near_duplicate",),  # its brightened twin measures sharper, so the twin stays
    }
    assert excluded["good-00.jpg"].detail.startswith("near-duplicate of twin-of-good-00.jpg (distance ")
    assert excluded["bad-blurry.jpg"].detail.startswith("sharpness ")
    assert len(index.images) == 20 and len(index.usable_images) == 17, "every swap is kept; 17 are usable"

    materialized = {e.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()}
    swap_meta = materialized["swapped_faces"]
    assert (swap_meta["usable_photos"].value, swap_meta["excluded_photos"].value) == (17, 3)
    assert "| excluded | 2 faces |" in swap_meta["verdicts"].value
    assert "data:image/jpeg;base64," in swap_meta["verdicts"].value
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    swap_checks = [e for e in evaluations.values() if e.asset_key.path == ["swapped_faces"]]
    failed = {e.check_name for e in swap_checks if not e.passed}
    assert failed == {"swapped_faces_meet_sdxl_resolution"}, "only the WARN that these 512 px photos are small"
    assert evaluations[ENOUGH_USABLE].severity == dg.AssetCheckSeverity.WARN  # 17 >= 15: passes
    assert evaluations[ENOUGH_USABLE].passed

    usable = {image.key for image in index.usable_images}
    assert {item.image_key for item in read_index(local_storage, MODEL, Captions).items} == usable


def test_four_usable_photos_stop_the_run_before_captions_with_what_to_fix(instance, local_storage, astronaut, photos):
    picked = {name: photos[name] for name in ("good-01.jpg", "good-02.jpg", "good-03.jpg", "good-04.jpg")}
    picked["bad-two-people.jpg"] = photos["bad-two-people.jpg"]
    upload(local_storage, astronaut, picked)
    result = materialize(instance, local_storage, [captions])
    assert not result.success, "a blocking check below [dataset].min_photos stops the run"
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == ENOUGH_USABLE]
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert "only 4 usable photos of 5, fewer than [dataset].min_photos = 5" in evaluation.description
    assert "1 several faces (bad-two-people.jpg): crop the other people out" in evaluation.description
    assert not [e for e in result.get_asset_materialization_events() if e.asset_key.path == ["captions"]]
