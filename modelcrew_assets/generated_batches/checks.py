"""Checks on a generated batch, and the contact sheet a person judges it by."""

from __future__ import annotations

import dagster as dg

from modelcrew_assets.generated_batches.prompt_packs import batch_prefix
from modelcrew_assets.handoffs import GeneratedBatch
from modelcrew_assets.imaging import contact_sheet, decode_image
from modelcrew_assets.previews import stored_preview
from modelcrew_assets.resources.storage import StorageResource

EVERY_IMAGE_HAS_A_RECORD = "every_image_has_a_provenance_record"
BATCH_IS_COMPLETE = "batch_is_complete"
SHEET_IMAGES = 30


def provenance_result(storage: StorageResource, batch: GeneratedBatch) -> dg.AssetCheckResult:
    """Every image file in the batch folder has a record in batch.json whose sha256 matches the file."""
    prefix = batch_prefix(batch.model, batch.batch_id)
    files = [item.key for item in storage.list(prefix) if item.key.endswith(".png") and "/records/" not in item.key]
    recorded = {image.key: image.sha256 for image in batch.images}
    unrecorded = [key for key in files if key not in recorded]
    mismatched = [key for key in files if key in recorded and storage.content_sha256(key) != recorded[key]]
    missing_files = sorted(set(recorded) - set(files))
    return dg.AssetCheckResult(
        check_name=EVERY_IMAGE_HAS_A_RECORD,
        passed=not (unrecorded or mismatched or missing_files),
        metadata={
            "images": len(files),
            "records": len(batch.images),
            "without_record": ", ".join(unrecorded[:20]) or "none",
            "sha256_mismatch": ", ".join(mismatched[:20]) or "none",
            "record_without_file": ", ".join(missing_files[:20]) or "none",
        },
    )


def complete_result(batch: GeneratedBatch) -> dg.AssetCheckResult:
    """All planned images exist; a capped or interrupted batch warns and says how to finish it."""
    missing = batch.planned - len(batch.images)
    return dg.AssetCheckResult(
        check_name=BATCH_IS_COMPLETE,
        passed=missing == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "planned": batch.planned,
            "rendered": len(batch.images),
            "missing": missing,
            "stopped_by": batch.stopped_by or "none",
            "to_finish": f"materialize again with batch_id {batch.batch_id!r}" if missing else "nothing to do",
        },
    )


def contact_sheet_metadata(storage: StorageResource, batch: GeneratedBatch) -> dict[str, dg.MetadataValue]:
    """The first images of the batch as one labelled contact sheet, inline and stored as a file."""
    shown = batch.images[:SHEET_IMAGES]
    if not shown:
        return {"contact_sheet": dg.MetadataValue.md("no images yet")}
    images = [decode_image(storage.get_bytes(image.key), image.key) for image in shown]
    sheet = contact_sheet(images, columns=6, cell=160, labels=[f"{image.index:04d}" for image in shown])
    more = f"\n\nfirst {len(shown)} of {len(batch.images)} images" if len(batch.images) > len(shown) else ""
    key = batch_prefix(batch.model, batch.batch_id) + "contact_sheet.jpg"
    return stored_preview(storage, "contact_sheet", key, sheet, f"batch {batch.batch_id}", caption=more)
