"""The quality gate on a model's training set, after the filter: the asset has already excluded the photos
that fail (curation.py), so these checks read its verdicts and judge what is left. A property check fails
only for a photo a person forced in; the count check blocks the run when too few usable photos remain."""

from collections.abc import Callable, Iterator, Sequence

import dagster as dg

from modelcrew_assets.handoffs import PhotoVerdict, SwappedFaces, read_index, read_model_spec
from modelcrew_assets.manifest import DatasetSection
from modelcrew_assets.near_duplicates import MAX_DISTANCE, near_duplicate_pairs
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.swapped_faces.curation import describe_shortfall
from modelcrew_assets.swapped_faces.inputs import ASSET
from modelcrew_assets.swapped_faces.quality import MIN_SHARPNESS, SDXL_MIN_SIDE

RESOLUTION = "swapped_faces_meet_sdxl_resolution"
SHARP = "swapped_faces_are_sharp"
NO_NEAR_DUPLICATES = "swapped_faces_have_no_near_duplicates"
ONE_FACE = "swapped_faces_have_one_face_each"
ENOUGH_USABLE = "swapped_faces_leave_enough_usable_photos"
_LISTED = 50  # enough offenders to act on without flooding the UI

SPECS = [
    dg.AssetCheckSpec(
        RESOLUTION,
        asset=ASSET,
        description=f"Every usable photo has a short side of at least {SDXL_MIN_SIDE} px (SDXL trains at "
        "1024); smaller ones still train, but softer.",
    ),
    dg.AssetCheckSpec(
        SHARP,
        asset=ASSET,
        description=f"Every usable photo is in focus: variance of the Laplacian >= {MIN_SHARPNESS:g} at 512 px.",
    ),
    dg.AssetCheckSpec(
        NO_NEAR_DUPLICATES,
        asset=ASSET,
        description=f"No two usable photos are near-duplicates (dHash Hamming distance <= {MAX_DISTANCE}).",
    ),
    dg.AssetCheckSpec(
        ONE_FACE,
        asset=ASSET,
        description="Exactly one prominent face in every usable photo (none or several confuse training).",
    ),
    dg.AssetCheckSpec(
        ENOUGH_USABLE,
        asset=ASSET,
        blocking=True,
        description="At least [dataset].min_photos (5) usable photos remain after the filter (below it the run "
        "stops, with what to fix); a warning below recommended_photos (15).",
    ),
]


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


def resolution_result(index: SwappedFaces, usable: Sequence[PhotoVerdict]) -> dg.AssetCheckResult:
    keys = {verdict.image_key for verdict in usable}
    photos = [image for image in index.images if image.key in keys]
    small = [f"{p.target_key}: {p.width}x{p.height}" for p in photos if min(p.width, p.height) < SDXL_MIN_SIDE]
    return _result(RESOLUTION, small, len(photos), dg.AssetCheckSeverity.WARN, min_short_side=SDXL_MIN_SIDE)


def sharp_result(index: SwappedFaces, usable: Sequence[PhotoVerdict]) -> dg.AssetCheckResult:
    scores = [(v.target_key, v.sharpness) for v in usable if v.sharpness is not None]
    soft = [f"{key}: {score:.0f} (forced in)" for key, score in scores if score < MIN_SHARPNESS]
    lowest = min((score for _, score in scores), default=0.0)
    return _result(SHARP, soft, len(scores), threshold=MIN_SHARPNESS, lowest_score=round(lowest, 1))


def near_duplicates_result(index: SwappedFaces, usable: Sequence[PhotoVerdict]) -> dg.AssetCheckResult:
    hashes = [(v.target_key, int(v.dhash, 16)) for v in usable if v.dhash is not None]
    offenders = [pair.describe() for pair in near_duplicate_pairs(hashes)]
    return _result(NO_NEAR_DUPLICATES, offenders, len(hashes), dg.AssetCheckSeverity.WARN, max_distance=MAX_DISTANCE)


def one_face_result(index: SwappedFaces, usable: Sequence[PhotoVerdict]) -> dg.AssetCheckResult:
    counted = [v for v in usable if v.faces is not None]
    wrong = [f"{v.target_key}: {v.faces} faces (forced in)" for v in counted if v.faces != 1]
    return _result(ONE_FACE, wrong, len(counted))


def enough_usable_result(model: str, index: SwappedFaces, dataset: DatasetSection) -> dg.AssetCheckResult:
    usable = len(index.usable_images)
    passed = usable >= dataset.recommended_photos
    too_few = usable < dataset.min_photos
    if too_few:
        description = describe_shortfall(model, index.verdicts, dataset.min_photos)
    elif not passed:
        description = f"{usable} usable photos; a likeness LoRA wants {dataset.recommended_photos}+"
    else:
        description = None
    return dg.AssetCheckResult(
        check_name=ENOUGH_USABLE,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR if too_few else dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "usable": usable,
            "excluded": len(index.verdicts) - usable if index.verdicts else 0,
            "min_photos": dataset.min_photos,
            "recommended_photos": dataset.recommended_photos,
        },
    )


_PROPERTY_RESULTS: dict[str, Callable[[SwappedFaces, Sequence[PhotoVerdict]], dg.AssetCheckResult]] = {
    RESOLUTION: resolution_result,
    SHARP: sharp_result,
    NO_NEAR_DUPLICATES: near_duplicates_result,
    ONE_FACE: one_face_result,
}


@dg.multi_asset_check(specs=SPECS, can_subset=True, name="swapped_faces_quality_gate")
def swapped_faces_quality_gate(
    context: dg.AssetCheckExecutionContext, storage: StorageResource
) -> Iterator[dg.AssetCheckResult]:
    """Size, sharpness, near-duplicates and face count of the usable photos, and whether enough remain."""
    model = context.partition_key
    wanted = frozenset(key.name for key in context.selected_asset_check_keys)
    index = read_index(storage, model, SwappedFaces)
    usable = [verdict for verdict in index.verdicts if verdict.usable]
    for spec in SPECS:
        if spec.name == ENOUGH_USABLE and spec.name in wanted:
            yield enough_usable_result(model, index, read_model_spec(storage, model).dataset)
        elif spec.name in wanted:
            yield _PROPERTY_RESULTS[spec.name](index, usable)


checks = [swapped_faces_quality_gate]
