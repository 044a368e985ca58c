"""The platform_exports asset: each generated batch made ready to post, per platform."""

import io
from collections import Counter

import dagster as dg
from PIL import Image
from pydantic import Field

from modelcrew_assets.handoffs import (
    GeneratedBatch,
    PlatformExports,
    read_index,
    read_model_spec,
    write_index,
)
from modelcrew_assets.imaging import contact_sheet
from modelcrew_assets.partitions import models_partitions
from modelcrew_assets.platform_exports.checks import (
    EXACT_SIZES,
    EXACT_SIZES_MEANING,
    LABELLED,
    LABELLED_MEANING,
    check_exports,
)
from modelcrew_assets.platform_exports.source_decode import MIN_SOURCE_SIDE
from modelcrew_assets.platform_exports.stage import batch_prefix, export_batch, export_settings
from modelcrew_assets.previews import stored_preview
from modelcrew_assets.resources.c2pa_signing import C2paSigningResource
from modelcrew_assets.resources.storage import StorageResource


class PlatformExportsConfig(dg.Config):
    min_source_side: int = Field(
        default=MIN_SOURCE_SIDE,
        ge=1,
        description="Smallest render side exported; lower it only for small test renders (e.g. image_size '64x64')",
    )


@dg.asset(
    name=PlatformExports.ASSET,
    deps=[GeneratedBatch.ASSET],
    partitions_def=models_partitions,
    group_name="exports",
    kinds={"pillow", "csv"},
    check_specs=[
        dg.AssetCheckSpec(EXACT_SIZES, asset=PlatformExports.ASSET, description=EXACT_SIZES_MEANING),
        dg.AssetCheckSpec(LABELLED, asset=PlatformExports.ASSET, description=LABELLED_MEANING),
    ],
)
def platform_exports(
    context: dg.AssetExecutionContext,
    config: PlatformExportsConfig,
    storage: StorageResource,
    c2pa: C2paSigningResource,
) -> dg.MaterializeResult:
    """The latest generated batch cropped, watermarked and AI-labelled per platform, with a manifest.csv each."""
    model = context.partition_key
    batch = read_index(storage, model, GeneratedBatch)
    spec = read_model_spec(storage, model)
    settings = export_settings(storage, spec, c2pa.signing(), config.min_source_side)
    result = export_batch(storage, spec, batch, settings, context.log)
    index = result.index
    if batch.images and not index.exports:
        reasons = "; ".join(rejected.reason for rejected in index.rejected[:3])
        raise dg.Failure(
            f"{PlatformExports.ASSET}: none of the {len(batch.images)} images of batch {batch.batch_id} "
            f"could be exported: {reasons}"
        )
    write_index(storage, index)
    per_platform = Counter(export.platform for export in index.exports)
    metadata: dict[str, object] = {
        "dagster/uri": dg.MetadataValue.path(storage.uri(batch_prefix(model, batch.batch_id))),
        "dagster/row_count": len(index.exports),
        "batch_id": batch.batch_id,
        "images_rendered": result.rendered,
        "images_reused": result.reused,
        "images_rejected": len(index.rejected),
        **{f"exports_{platform.name}": per_platform[platform.name] for platform in settings.platforms},
        "faces_not_kept": sum(1 for export in index.exports if export.face_kept is False),
        "settings_fingerprint": index.settings_fingerprint[:12],
        **_preview(storage, index),
    }
    if index.rejected:
        metadata["rejected"] = dg.MetadataValue.md("\n".join(f"- {item.reason}" for item in index.rejected))
    if settings.c2pa is not None:
        metadata["c2pa_signed"] = True
    if index.dry_run:
        metadata["dry_run"] = True
    return dg.MaterializeResult(metadata=metadata, check_results=check_exports(storage, index, settings.platforms))


def _preview(storage: StorageResource, index: PlatformExports) -> dict[str, dg.MetadataValue]:
    """One export per platform, side by side, inline and stored beside the batch's exports."""
    first = {}
    for export in index.exports:
        first.setdefault(export.platform, export)
    images = [Image.open(io.BytesIO(storage.get_bytes(export.key))) for export in first.values()]
    sheet = contact_sheet(images, columns=len(images), cell=320, labels=list(first))
    key = batch_prefix(index.model, index.batch_id) + "preview.jpg"
    return stored_preview(storage, "preview", key, sheet, "one export per platform")
