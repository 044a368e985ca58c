"""The quality gate as a filter: every target photo gets a verdict (usable, or excluded with its reasons),
so one doubtful photo leaves the training set instead of stopping the run.

Each swapped photo is decoded once and measured (prominent faces, sharpness, dHash, size). Own faults
exclude it: no face, several faces, blurry, too small. Of near-duplicates the sharper photo stays. A person
overrides any of it with `[swap].force_include` / `force_exclude` (target file names).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from PIL import Image, ImageOps

from modelcrew_assets.handoffs import ExclusionReason, PhotoVerdict, SwappedFace
from modelcrew_assets.imaging import decode_image
from modelcrew_assets.manifest import ModelSpec
from modelcrew_assets.near_duplicates import MAX_DISTANCE, dhash, hamming
from modelcrew_assets.object_store import Storage
from modelcrew_assets.swapped_faces.quality import MIN_SHARPNESS, face_count, sharpness
from modelcrew_assets.swapped_faces.results import TargetOutcome

_DECODERS = 8  # photos in flight at once: storage reads overlap, memory stays at a few decoded images
_THUMB = 96


@dataclass(frozen=True)
class PhotoMeasures:
    image: SwappedFace
    faces: int
    sharpness: float
    dhash: int
    thumbnail: Image.Image = field(repr=False, compare=False)


def measure(storage: Storage, item: SwappedFace) -> PhotoMeasures:
    image = decode_image(storage.get_bytes(item.key), item.key)
    return PhotoMeasures(
        item, face_count(image), sharpness(image), dhash(image), ImageOps.contain(image, (_THUMB, _THUMB))
    )


def measure_all(storage: Storage, images: Sequence[SwappedFace]) -> dict[str, PhotoMeasures]:
    """Measures by swapped image key."""
    with ThreadPoolExecutor(max_workers=_DECODERS) as pool:
        return {m.image.key: m for m in pool.map(lambda item: measure(storage, item), images)}


@dataclass(frozen=True)
class Curation:
    verdicts: tuple[PhotoVerdict, ...]
    unmatched_forced: tuple[str, ...]  # names in the force lists that match no target

    @property
    def usable(self) -> list[PhotoVerdict]:
        return [verdict for verdict in self.verdicts if verdict.usable]

    @property
    def excluded(self) -> list[PhotoVerdict]:
        return [verdict for verdict in self.verdicts if not verdict.usable]


def curate(
    outcomes: Sequence[TargetOutcome],
    unreadable: Sequence[tuple[str, str]],
    measures: dict[str, PhotoMeasures],
    spec: ModelSpec,
) -> Curation:
    """A verdict per target photo: its own faults first, then near-duplicates among the rest, then the
    manifest's force lists."""
    include, exclude = set(spec.swap.force_include), set(spec.swap.force_exclude)
    verdicts: dict[str, PhotoVerdict] = {}
    for key, why in unreadable:
        verdicts[key] = PhotoVerdict(target_key=key, usable=False, reasons=("unreadable",), detail=why)
    for outcome in outcomes:
        verdicts[outcome.target_key] = _own_verdict(outcome, measures, spec.dataset.min_short_side)
        for copy in outcome.duplicates:
            verdicts[copy] = PhotoVerdict(
                target_key=copy,
                usable=False,
                reasons=("near_duplicate",),
                detail=f"the same file as {_name(outcome.target_key)}",
            )
    for key, verdict in list(verdicts.items()):
        if _forced(key, exclude):
            verdicts[key] = verdict.model_copy(update={"usable": False, "forced": "out"})
            verdicts[key] = _with_reason(verdicts[key], "forced_out", "excluded by [swap].force_exclude")
        elif _forced(key, include) and verdict.image_key is not None:
            verdicts[key] = verdict.model_copy(update={"usable": True, "forced": "in"})
    _drop_near_duplicates(verdicts)
    names = {_name(key) for key in verdicts} | {PurePosixPath(key).stem for key in verdicts}
    unmatched = tuple(sorted((include | exclude) - names))
    return Curation(tuple(verdicts[key] for key in sorted(verdicts)), unmatched)


def _own_verdict(outcome: TargetOutcome, measures: dict[str, PhotoMeasures], min_side: int) -> PhotoVerdict:
    if outcome.result is None:
        reason: ExclusionReason = "no_face" if outcome.status == "no_face" else "failed_swap"
        return PhotoVerdict(
            target_key=outcome.target_key, usable=False, reasons=(reason,), detail=outcome.reason or outcome.status
        )
    found = measures[outcome.result.key]
    faults: list[tuple[ExclusionReason, str]] = []
    if found.faces == 0:
        faults.append(("no_face", "no face found in the swapped photo"))
    elif found.faces > 1:
        faults.append(("several_faces", f"{found.faces} faces"))
    if found.sharpness < MIN_SHARPNESS:
        faults.append(("blurry", f"sharpness {found.sharpness:.0f} < {MIN_SHARPNESS:g}"))
    side = min(outcome.result.width, outcome.result.height)
    if side < min_side:
        faults.append(("too_small", f"short side {side} px < {min_side} ([dataset].min_short_side)"))
    return PhotoVerdict(
        target_key=outcome.target_key,
        image_key=outcome.result.key,
        usable=not faults,
        reasons=tuple(reason for reason, _ in faults),
        detail="; ".join(text for _, text in faults),
        faces=found.faces,
        sharpness=round(found.sharpness, 1),
        dhash=f"{found.dhash:016x}",
    )


def _drop_near_duplicates(verdicts: dict[str, PhotoVerdict]) -> None:
    """Of photos that look alike the sharper one stays (a forced-in photo always does)."""
    candidates = sorted(
        (v for v in verdicts.values() if v.usable and v.dhash is not None),
        key=lambda v: (v.forced != "in", -(v.sharpness or 0.0), v.target_key),
    )
    kept: list[PhotoVerdict] = []
    for verdict in candidates:
        twin = next((k for k in kept if hamming(int(k.dhash, 16), int(verdict.dhash, 16)) <= MAX_DISTANCE), None)
        if twin is None or verdict.forced == "in":
            kept.append(verdict)
            continue
        distance = hamming(int(twin.dhash, 16), int(verdict.dhash, 16))
        why = f"near-duplicate of {_name(twin.target_key)} (distance {distance}), which is sharper"
        verdicts[verdict.target_key] = _with_reason(verdict.model_copy(update={"usable": False}), "near_duplicate", why)


def _with_reason(verdict: PhotoVerdict, reason: ExclusionReason, text: str) -> PhotoVerdict:
    detail = f"{verdict.detail}; {text}" if verdict.detail else text
    return verdict.model_copy(update={"reasons": (*verdict.reasons, reason), "detail": detail})


def _forced(target_key: str, names: set[str]) -> bool:
    return _name(target_key) in names or PurePosixPath(target_key).stem in names


def _name(target_key: str) -> str:
    return target_key.rsplit("/", 1)[-1]


_FIXES: dict[ExclusionReason, str] = {
    "failed_swap": "rerun (failed swaps are retried; ledgered jobs are polled, not paid again)",
    "unreadable": "re-export the file as JPEG or PNG and upload it again",
    "no_face": "use photos where the face is clearly visible and frontal",
    "several_faces": "crop the other people out, or use photos of the model alone",
    "blurry": "use sharper photos (in focus, no motion blur)",
    "too_small": "upload larger originals, or lower [dataset].min_short_side",
    "near_duplicate": "replace look-alike shots with different poses, outfits or places",
    "forced_out": "take names off [swap].force_exclude",
}


def describe_shortfall(model: str, verdicts: Sequence[PhotoVerdict], min_photos: int) -> str:
    """Why the training set is too small and what would fix it, reason by reason."""
    usable = sum(verdict.usable for verdict in verdicts)
    by_reason: dict[ExclusionReason, list[str]] = {}
    for verdict in verdicts:
        if not verdict.usable:
            for reason in verdict.reasons[:1]:  # the first reason is the one to fix first
                by_reason.setdefault(reason, []).append(_name(verdict.target_key))
    lines = [
        f"swapped_faces for {model!r}: only {usable} usable photos of {len(verdicts)}, fewer than "
        f"[dataset].min_photos = {min_photos}; the run stops before captions and training."
    ]
    for reason, names in sorted(by_reason.items(), key=lambda item: -len(item[1])):
        shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
        lines.append(f"{len(names)} {reason.replace('_', ' ')} ({shown}): {_FIXES[reason]}")
    lines.append(
        'Upload more photos, force good ones in with [swap].force_include = ["name.jpg"], or lower '
        "[dataset].min_photos."
    )
    return "\n".join(lines)
