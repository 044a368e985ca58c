"""The training set curates itself, pure parts: a verdict per photo and reason, force lists, the shortfall
message, the [dataset] settings, and where a face crop is cut."""

import pytest
from PIL import Image

from modelcrew_assets.handoffs import SwappedFace
from modelcrew_assets.kohya_dataset.face_crops import crop_box, wants_crop
from modelcrew_assets.manifest import DatasetSection, ManifestError, parse_manifest
from modelcrew_assets.swapped_faces.curation import PhotoMeasures, curate, describe_shortfall
from modelcrew_assets.swapped_faces.results import TargetOutcome
from modelcrew_assets_tests.builders import manifest_text

TARGETS = "uploads/blondie/targets/"
SHARP, SOFT = 400.0, 40.0
# dHashes: far apart unless made to be near (a few bits flipped)
DISTINCT = [0x0F0F0F0F0F0F0F0F, 0xF0F0F0F0F0F0F0F0, 0x00FF00FF00FF00FF, 0xFF00FF00FF00FF00, 0x3333333333333333]


def spec(extra: str = ""):
    return parse_manifest(manifest_text(extra=extra), source="model.toml")


def swapped(name: str, size: int = 1024) -> TargetOutcome:
    image = SwappedFace(
        key=f"models/blondie/swapped_faces/{name}.jpg",
        sha256=name,
        target_key=TARGETS + name + ".jpg",
        target_sha256=name,
        width=size,
        height=size,
    )
    return TargetOutcome(image.target_key, "swapped", result=image)


def measured(outcome: TargetOutcome, faces: int = 1, score: float = SHARP, hash_: int = DISTINCT[0]) -> PhotoMeasures:
    return PhotoMeasures(outcome.result, faces, score, hash_, Image.new("RGB", (4, 4)))


def verdicts_by_name(curation):
    return {v.target_key.rsplit("/", 1)[-1]: v for v in curation.verdicts}


def test_each_fault_gets_its_own_verdict_and_reason():
    good, two, soft, small = swapped("good"), swapped("two"), swapped("soft"), swapped("small", size=400)
    outcomes = [
        good,
        two,
        soft,
        small,
        TargetOutcome(TARGETS + "wall.jpg", "no_face", reason="no face detected"),
        TargetOutcome(TARGETS + "lost.jpg", "failed", reason="face too small to swap"),
    ]
    measures = {
        good.result.key: measured(good, hash_=DISTINCT[0]),
        two.result.key: measured(two, faces=2, hash_=DISTINCT[1]),
        soft.result.key: measured(soft, score=SOFT, hash_=DISTINCT[2]),
        small.result.key: measured(small, hash_=DISTINCT[3]),
    }
    curation = curate(outcomes, [(TARGETS + "broken.jpg", "not an image")], measures, spec())
    found = verdicts_by_name(curation)
    assert found["good.jpg"].usable and found["good.jpg"].reasons == ()
    expected = {
        "two.jpg": ("several_faces", "2 faces"),
        "soft.jpg": ("blurry", "sharpness 40 < 100"),
        "small.jpg": ("too_small", "short side 400 px < 512"),
        "wall.jpg": ("no_face", "no face detected"),
        "lost.jpg": ("failed_swap", "face too small to swap"),
        "broken.jpg": ("unreadable", "not an image"),
    }
    for name, (reason, words) in expected.items():
        assert not found[name].usable and found[name].reasons == (reason,), name
        assert words in found[name].detail, name
    assert [v.target_key for v in curation.usable] == [TARGETS + "good.jpg"]


def test_of_near_duplicates_the_sharper_photo_stays():
    blur, crisp, other = swapped("blur"), swapped("crisp"), swapped("other")
    measures = {
        blur.result.key: measured(blur, score=150.0, hash_=DISTINCT[0]),
        crisp.result.key: measured(crisp, score=900.0, hash_=DISTINCT[0] ^ 0b111),
        other.result.key: measured(other, hash_=DISTINCT[1]),
    }
    found = verdicts_by_name(curate([blur, crisp, other], [], measures, spec()))
    assert found["crisp.jpg"].usable and found["other.jpg"].usable
    assert found["blur.jpg"].reasons == ("near_duplicate",)
    assert found["blur.jpg"].detail == "near-duplicate of crisp.jpg (distance 3), which is sharper"


def test_force_lists_override_the_verdict_and_unknown_names_are_reported():
    soft, good = swapped("soft"), swapped("good")
    measures = {soft.result.key: measured(soft, score=SOFT), good.result.key: measured(good, hash_=DISTINCT[1])}
    manifest = spec('\n[swap]\nforce_include = ["soft.jpg"]\nforce_exclude = ["good", "typo.jpg"]\n')
    curation = curate([soft, good], [], measures, manifest)
    found = verdicts_by_name(curation)
    assert found["soft.jpg"].usable and found["soft.jpg"].forced == "in" and found["soft.jpg"].reasons == ("blurry",)
    assert not found["good.jpg"].usable and found["good.jpg"].reasons == ("forced_out",)
    assert curation.unmatched_forced == ("typo.jpg",)


def test_identical_uploads_are_one_photo_and_the_copies_are_listed():
    outcome = swapped("original")
    outcome = TargetOutcome(outcome.target_key, "swapped", result=outcome.result, duplicates=(TARGETS + "copy.jpg",))
    found = verdicts_by_name(curate([outcome], [], {outcome.result.key: measured(outcome)}, spec()))
    assert found["original.jpg"].usable
    assert not found["copy.jpg"].usable and found["copy.jpg"].detail == "the same file as original.jpg"


def test_shortfall_message_counts_each_reason_and_says_what_to_do():
    outcomes = [swapped(f"p{i}") for i in range(4)]
    measures = {
        o.result.key: measured(o, score=SOFT if i else SHARP, hash_=DISTINCT[i]) for i, o in enumerate(outcomes)
    }
    curation = curate(outcomes, [], measures, spec())
    message = describe_shortfall("blondie", curation.verdicts, 5)
    assert "only 1 usable photos of 4, fewer than [dataset].min_photos = 5" in message
    assert "3 blurry (p1.jpg, p2.jpg, p3.jpg): use sharper photos" in message
    assert "[swap].force_include" in message


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ('\n[swap]\nforce_include = ["a.jpg"]\nforce_exclude = ["a.jpg"]\n', "a.jpg is in both"),
        ('\n[swap]\nforce_exclude = ["targets/a.jpg"]\n', "target file names"),
        ("\n[dataset]\nmin_photos = 20\n", "recommended_photos (15) is below min_photos (20)"),
        ('\n[dataset]\nface_crops = "sometimes"\n', "[dataset].face_crops"),
        ("\n[dataset]\ncrops = true\n", "unknown key [dataset].crops"),
    ],
)
def test_bad_dataset_settings_name_the_field(extra, error):
    with pytest.raises(ManifestError, match=error.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        spec(extra)


def test_auto_face_crops_only_where_the_face_is_small_and_the_crop_stays_in_the_frame():
    auto = DatasetSection()
    assert wants_crop((400, 300, 120, 120), (1024, 1024), auto)
    assert not wants_crop((300, 200, 400, 400), (1024, 1024), auto)
    assert not wants_crop(None, (1024, 1024), DatasetSection(face_crops="always"))
    assert wants_crop((300, 200, 400, 400), (1024, 1024), DatasetSection(face_crops="always"))
    assert not wants_crop((400, 300, 120, 120), (1024, 1024), DatasetSection(face_crops="never"))
    assert crop_box((400, 300, 120, 120), (1024, 1024), 2.5) == (310, 210, 610, 510)
    # A face at the edge: the square is shifted inside, not shrunk.
    assert crop_box((0, 900, 120, 120), (1024, 1024), 2.5) == (0, 724, 300, 1024)
