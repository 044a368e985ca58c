"""What a swap run tells a person: counts, cost, provider job ids, what failed and why, and a preview."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import dagster as dg

from modelcrew_assets.handoffs import SwappedFace
from modelcrew_assets.imaging import contact_sheet, decode_image, markdown_image
from modelcrew_assets.previews import stored_preview
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.storage_keys import asset_prefix
from modelcrew_assets.swapped_faces.curation import Curation, PhotoMeasures
from modelcrew_assets.swapped_faces.inputs import ASSET
from modelcrew_assets.swapped_faces.results import TargetOutcome

_PREVIEW_IMAGES = 20
_LISTED = 100


@dataclass(frozen=True)
class SwapReport:
    model: str
    outcomes: list[TargetOutcome]
    unreadable: tuple[tuple[str, str], ...]
    simulated: bool  # the provider's label: its jobs are free, and the metadata says dry_run
    price_per_job: float

    @property
    def counts(self) -> Counter:
        return Counter(outcome.status for outcome in self.outcomes)

    @property
    def succeeded(self) -> int:
        return sum(outcome.succeeded for outcome in self.outcomes)

    @property
    def attempted(self) -> int:
        """Targets a swap was tried for: everything but photos without a face."""
        return sum(outcome.status != "no_face" for outcome in self.outcomes)

    @property
    def jobs_created(self) -> int:
        """Paid jobs created by this run (a simulated provider's are free)."""
        return 0 if self.simulated else sum(outcome.jobs_created for outcome in self.outcomes)

    @property
    def problems(self) -> list[TargetOutcome]:
        return [outcome for outcome in self.outcomes if not outcome.succeeded]

    @property
    def images(self) -> tuple[SwappedFace, ...]:
        found = {o.result.key: o.result for o in self.outcomes if o.result is not None}
        return tuple(sorted(found.values(), key=lambda image: image.target_key))

    def meets(self, min_success: float) -> bool:
        return self.succeeded > 0 and self.succeeded >= min_success * self.attempted

    def metadata(self, storage: StorageResource) -> dict[str, object]:
        counts = self.counts
        metadata: dict[str, object] = {
            "swapped": counts["swapped"],
            "cached": counts["cached"],
            "skipped_no_face": counts["no_face"],
            "failed": counts["failed"],
            "needs_attention": counts["needs_attention"],
            "unreadable_targets": len(self.unreadable),
            "duplicate_targets": sum(len(o.duplicates) for o in self.outcomes),
            "success_rate": round(self.succeeded / self.attempted, 3) if self.attempted else 0.0,
            "jobs_created": self.jobs_created,
            "price_per_job_usd": self.price_per_job,
            "cost_usd": round(self.jobs_created * self.price_per_job, 4),
            "provider_job_ids": dg.MetadataValue.json(
                {o.target_key: list(o.job_ids) for o in self.outcomes[:_LISTED] if o.job_ids}
            ),
            "dry_run": self.simulated,
            "dagster/row_count": len(self.images),
            "dagster/uri": dg.MetadataValue.path(storage.uri(asset_prefix(self.model, ASSET))),
        }
        problems = [f"- {o.target_key}: {o.status}: {o.reason}" for o in self.problems]
        problems += [f"- {key}: unreadable: {why}" for key, why in self.unreadable]
        if problems:
            metadata["problems"] = dg.MetadataValue.md("\n".join(problems[:_LISTED]))
        if self.images:
            metadata.update(_preview(storage, self.model, self.images))
        return metadata


def describe_failure(report: SwapReport, min_success: float) -> str:
    if report.attempted == 0:
        return (
            f"swapped_faces for {report.model!r}: no target photo has a detectable face; upload photos where "
            "one face is clearly visible"
        )
    failed = [f"{o.target_key} ({o.status}: {o.reason})" for o in report.problems if o.status != "no_face"]
    return (
        f"swapped_faces for {report.model!r}: only {report.succeeded} of {report.attempted} targets were "
        f"swapped, below swap.min_success = {min_success:.0%}. Failed: {'; '.join(failed[:10])}"
        f"{' ...' if len(failed) > 10 else ''}. Rerun to retry only these: finished swaps are reused and "
        "ledgered jobs are polled, not paid for again."
    )


def _preview(storage: StorageResource, model: str, images: tuple[SwappedFace, ...]) -> dict[str, dg.MetadataValue]:
    shown = images[:_PREVIEW_IMAGES]
    pictures = [decode_image(storage.get_bytes(item.key), item.key) for item in shown]
    sheet = contact_sheet(pictures, labels=[item.target_key.rsplit("/", 1)[-1][:24] for item in shown])
    more = f"\n\n(first {len(shown)} of {len(images)})" if len(images) > len(shown) else ""
    key = asset_prefix(model, ASSET) + "preview.jpg"
    return stored_preview(storage, "preview", key, sheet, "swapped faces", caption=more)


def curation_metadata(curation: Curation, measures: dict[str, PhotoMeasures]) -> dict[str, object]:
    """The verdicts a person checks: counts per reason and a table of thumbnails, excluded photos first."""
    reasons = Counter(reason for verdict in curation.excluded for reason in verdict.reasons[:1])
    rows = ["| photo | target | verdict | why |", "| --- | --- | --- | --- |"]
    for verdict in [*curation.excluded, *curation.usable][:_LISTED]:
        found = measures.get(verdict.image_key or "")
        thumb = markdown_image(found.thumbnail, "photo", 96, 70) if found else "(no photo)"
        state = "ok" if verdict.usable else "excluded"
        if verdict.forced:
            state += f" (forced {verdict.forced})"
        rows.append(f"| {thumb} | {verdict.target_key.rsplit('/', 1)[-1]} | {state} | {verdict.detail or '-'} |")
    metadata: dict[str, object] = {
        "usable_photos": len(curation.usable),
        "excluded_photos": len(curation.excluded),
        "excluded_by_reason": dg.MetadataValue.json(dict(reasons)),
        "verdicts": dg.MetadataValue.md("\n".join(rows)),
    }
    if curation.unmatched_forced:
        metadata["unmatched_force_names"] = ", ".join(curation.unmatched_forced)
    return metadata
