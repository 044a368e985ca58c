"""The quality gate on a model's swapped photos: four asset checks named as the property they assert, run
as one step that decodes each photo once and takes every measure the selected checks need from it."""

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import dagster as dg

from modelcrew_assets.handoffs import SwappedFace, SwappedFaces, read_index
from modelcrew_assets.imaging import decode_image
from modelcrew_assets.near_duplicates import MAX_DISTANCE, dhash, near_duplicate_pairs
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.swapped_faces.inputs import ASSET
from modelcrew_assets.swapped_faces.quality import MIN_SHARPNESS, SDXL_MIN_SIDE, face_count, sharpness

RESOLUTION = "swapped_faces_meet_sdxl_resolution"
SHARP = "swapped_faces_are_sharp"
NO_NEAR_DUPLICATES = "swapped_faces_have_no_near_duplicates"
ONE_FACE = "swapped_faces_have_one_face_each"
_LISTED = 50  # enough offenders to act on without flooding the UI
_DECODERS = 8  # photos in flight at once: storage reads overlap, memory stays at a few decoded images

SPECS = [
    dg.AssetCheckSpec(
        RESOLUTION,
        asset=ASSET,
        description=f"Every swapped photo has a short side of at least {SDXL_MIN_SIDE} px (SDXL trains at "
        "1024); smaller ones still train, but softer.",
    ),
    dg.AssetCheckSpec(
        SHARP,
        asset=ASSET,
        description=f"Every swapped photo is in focus: variance of the Laplacian >= {MIN_SHARPNESS:g} at 512 px.",
    ),
    dg.AssetCheckSpec(
        NO_NEAR_DUPLICATES,
        asset=ASSET,
        description=f"No two swapped photos are near-duplicates (dHash Hamming distance <= {MAX_DISTANCE}).",
    ),
    dg.AssetCheckSpec(
        ONE_FACE,
        asset=ASSET,
        blocking=True,
        description="Exactly one prominent face in every swapped photo (none or several confuse training).",
    ),
]


@dataclass(frozen=True)
class PhotoMeasures:
    """What the checks need from one swapped photo; a measure no selected check asked for stays None."""

    target_key: str
    width: int
    height: int
    sharpness: float | None
    dhash: int | None
    faces: int | None


def measure(storage: StorageResource, item: SwappedFace, wanted: frozenset[str]) -> PhotoMeasures:
    image = decode_image(storage.get_bytes(item.key), item.key)
    return PhotoMeasures(
        target_key=item.target_key,
        width=image.width,
        height=image.height,
        sharpness=sharpness(image) if SHARP in wanted else None,
        dhash=dhash(image) if NO_NEAR_DUPLICATES in wanted else None,
        faces=face_count(image) if ONE_FACE in wanted else None,
    )


def measure_all(storage: StorageResource, model: str, wanted: frozenset[str]) -> list[PhotoMeasures]:
    index = read_index(storage, model, SwappedFaces)
    with ThreadPoolExecutor(max_workers=_DECODERS) as pool:
        return list(pool.map(lambda item: measure(storage, item, wanted), index.images))


def _result(
    name: str,
    offenders: list[str],
    checked: int,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    **metadata: object,
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=name,
        passed=not offenders,
        severity=severity,
        metadata={
            "checked": checked,
            "offending": len(offenders),
            "offenders": dg.MetadataValue.md("\n".join(f"- {o}" for o in offenders[:_LISTED]) or "none"),
            **metadata,
        },
    )


def resolution_result(photos: Sequence[PhotoMeasures]) -> dg.AssetCheckResult:
    small = [f"{p.target_key}: {p.width}x{p.height}" for p in photos if min(p.width, p.height) < SDXL_MIN_SIDE]
    return _result(RESOLUTION, small, len(photos), dg.AssetCheckSeverity.WARN, min_short_side=SDXL_MIN_SIDE)


def sharp_result(photos: Sequence[PhotoMeasures]) -> dg.AssetCheckResult:
    soft = [f"{p.target_key}: {p.sharpness:.0f}" for p in photos if p.sharpness < MIN_SHARPNESS]
    lowest = min((p.sharpness for p in photos), default=0.0)
    return _result(SHARP, soft, len(photos), threshold=MIN_SHARPNESS, lowest_score=round(lowest, 1))


def near_duplicates_result(photos: Sequence[PhotoMeasures]) -> dg.AssetCheckResult:
    pairs = near_duplicate_pairs((p.target_key, p.dhash) for p in photos)
    offenders = [pair.describe() for pair in pairs]
    return _result(NO_NEAR_DUPLICATES, offenders, len(photos), dg.AssetCheckSeverity.WARN, max_distance=MAX_DISTANCE)


def one_face_result(photos: Sequence[PhotoMeasures]) -> dg.AssetCheckResult:
    wrong = [f"{p.target_key}: {p.faces} faces" for p in photos if p.faces != 1]
    return _result(ONE_FACE, wrong, len(photos))


_RESULTS: dict[str, Callable[[Sequence[PhotoMeasures]], dg.AssetCheckResult]] = {
    RESOLUTION: resolution_result,
    SHARP: sharp_result,
    NO_NEAR_DUPLICATES: near_duplicates_result,
    ONE_FACE: one_face_result,
}


@dg.multi_asset_check(specs=SPECS, can_subset=True, name="swapped_faces_quality_gate")
def swapped_faces_quality_gate(
    context: dg.AssetCheckExecutionContext, storage: StorageResource
) -> Iterator[dg.AssetCheckResult]:
    """Size, sharpness, near-duplicates and face count of every swapped photo, from one decode each."""
    wanted = frozenset(key.name for key in context.selected_asset_check_keys)
    photos = measure_all(storage, context.partition_key, wanted)
    for spec in SPECS:
        if spec.name in wanted:
            yield _RESULTS[spec.name](photos)


checks = [swapped_faces_quality_gate]
