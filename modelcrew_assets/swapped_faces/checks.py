"""The quality gate on a model's swapped photos, as asset checks named as the property they assert."""

from concurrent.futures import ThreadPoolExecutor

import dagster as dg
from PIL import Image

from modelcrew_assets.handoffs import SwappedFace, SwappedFaces, read_index
from modelcrew_assets.imaging import decode_image
from modelcrew_assets.near_duplicates import MAX_DISTANCE, find_near_duplicates
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.swapped_faces.quality import MIN_SHARPNESS, SDXL_MIN_SIDE, face_count, sharpness, short_side

_LISTED = 50  # enough offenders to act on without flooding the UI


def load_results(storage: StorageResource, model: str) -> list[tuple[SwappedFace, Image.Image]]:
    index = read_index(storage, model, SwappedFaces)
    with ThreadPoolExecutor(max_workers=8) as pool:
        images = pool.map(lambda item: decode_image(storage.get_bytes(item.key), item.key), index.images)
        return list(zip(index.images, images))


def _result(
    passed: bool,
    offenders: list[str],
    checked: int,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    **metadata: object,
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=passed,
        severity=severity,
        metadata={
            "checked": checked,
            "offending": len(offenders),
            "offenders": dg.MetadataValue.md("\n".join(f"- {o}" for o in offenders[:_LISTED]) or "none"),
            **metadata,
        },
    )


@dg.asset_check(
    asset="swapped_faces",
    description=f"Every swapped photo has a short side of at least {SDXL_MIN_SIDE} px (SDXL trains at 1024); "
    "smaller ones still train, but softer.",
)
def swapped_faces_meet_sdxl_resolution(
    context: dg.AssetCheckExecutionContext, storage: StorageResource
) -> dg.AssetCheckResult:
    results = load_results(storage, context.partition_key)
    small = [f"{item.target_key}: {img.width}x{img.height}" for item, img in results if short_side(img) < SDXL_MIN_SIDE]
    return _result(not small, small, len(results), dg.AssetCheckSeverity.WARN, min_short_side=SDXL_MIN_SIDE)


@dg.asset_check(
    asset="swapped_faces",
    description=f"Every swapped photo is in focus: variance of the Laplacian >= {MIN_SHARPNESS:g} at 512 px.",
)
def swapped_faces_are_sharp(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    results = load_results(storage, context.partition_key)
    scores = {item.target_key: sharpness(img) for item, img in results}
    soft = [f"{key}: {score:.0f}" for key, score in scores.items() if score < MIN_SHARPNESS]
    lowest = min(scores.values(), default=0.0)
    return _result(not soft, soft, len(results), threshold=MIN_SHARPNESS, lowest_score=round(lowest, 1))


@dg.asset_check(
    asset="swapped_faces",
    description=f"No two swapped photos are near-duplicates (dHash Hamming distance <= {MAX_DISTANCE}).",
)
def swapped_faces_have_no_near_duplicates(
    context: dg.AssetCheckExecutionContext, storage: StorageResource
) -> dg.AssetCheckResult:
    results = load_results(storage, context.partition_key)
    pairs = find_near_duplicates((item.target_key, img) for item, img in results)
    offenders = [pair.describe() for pair in pairs]
    return _result(not pairs, offenders, len(results), dg.AssetCheckSeverity.WARN, max_distance=MAX_DISTANCE)


@dg.asset_check(
    asset="swapped_faces",
    blocking=True,
    description="Exactly one prominent face in every swapped photo (none or several confuse training).",
)
def swapped_faces_have_one_face_each(
    context: dg.AssetCheckExecutionContext, storage: StorageResource
) -> dg.AssetCheckResult:
    results = load_results(storage, context.partition_key)
    counts = {item.target_key: face_count(img) for item, img in results}
    wrong = [f"{key}: {count} faces" for key, count in counts.items() if count != 1]
    return _result(not wrong, wrong, len(results))


checks = [
    swapped_faces_meet_sdxl_resolution,
    swapped_faces_are_sharp,
    swapped_faces_have_no_near_duplicates,
    swapped_faces_have_one_face_each,
]
