"""Export one generated batch into storage: what to render, what is already there, the files, the
per-platform manifest.csv and the index. Rendering itself is the pure core (render.py, pool.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from pydantic import BaseModel, ConfigDict

from modelcrew_assets.handoffs import GeneratedBatch, GeneratedImage, PlatformExport, PlatformExports, RejectedImage
from modelcrew_assets.manifest import ModelSpec
from modelcrew_assets.object_store import Storage
from modelcrew_assets.platform_exports.labels import TRAINED_ALGORITHMIC_MEDIA
from modelcrew_assets.platform_exports.platforms import ExportConfigError, Platform, resolve_platforms
from modelcrew_assets.platform_exports.pool import export_many
from modelcrew_assets.platform_exports.post_text import generated_label, hashtags, suggested_caption
from modelcrew_assets.platform_exports.provenance import C2paSigning
from modelcrew_assets.platform_exports.render import ExportSettings, Fit, Rendered, SourceImage
from modelcrew_assets.platform_exports.scheduler_csv import ManifestRow, manifest_csv
from modelcrew_assets.platform_exports.source_decode import MIN_SOURCE_SIDE
from modelcrew_assets.platform_exports.watermark import Watermark
from modelcrew_assets.storage_keys import asset_prefix, manifest_key, upload_prefix

ASSET = PlatformExports.ASSET
# Bump when the render code changes what the same settings produce, so old exports are redone.
RENDER_VERSION = "1"
# Starting worker processes costs about a second: below this many images render in this process.
_POOL_MIN_IMAGES = 4


class _RenderRecord(BaseModel):
    """Sidecar written after a source's files: its presence means they all exist."""

    model_config = ConfigDict(frozen=True)
    exports: tuple[PlatformExport, ...]


@dataclass(frozen=True)
class BatchExport:
    index: PlatformExports
    rendered: int  # source images rendered in this run
    reused: int  # source images whose exports were already there with the same settings


def export_settings(
    storage: Storage, spec: ModelSpec, c2pa: C2paSigning | None = None, min_source_side: int = MIN_SOURCE_SIDE
) -> ExportSettings:
    """The manifest's [export] section as render settings (the watermark logo read from the uploads)."""
    export, source = spec.export, manifest_key(spec.name)
    logo = None
    if export.watermark_logo:
        logo_key = upload_prefix(spec.name) + export.watermark_logo
        try:
            logo = storage.get_bytes(logo_key)
        except KeyError:
            raise ExportConfigError(
                f"{source}: [export].watermark_logo is {export.watermark_logo!r} but {logo_key} does not exist; "
                "upload the PNG there or remove the setting"
            ) from None
    watermark = None
    if logo is not None or export.watermark:
        watermark = Watermark(
            text=export.watermark,
            logo_png=logo,
            position=export.watermark_position,
            opacity=export.watermark_opacity,
            margin=export.watermark_margin,
            width=export.watermark_width,
        )
    return ExportSettings(
        resolve_platforms(export, source), export.jpeg_quality, watermark, c2pa, min_source_side=min_source_side
    )


def settings_fingerprint(settings: ExportSettings) -> str:
    described = dataclasses.asdict(settings)
    if settings.watermark is not None and settings.watermark.logo_png is not None:
        described["watermark"]["logo_png"] = hashlib.sha256(settings.watermark.logo_png).hexdigest()
    if settings.c2pa is not None:
        # The certificate says who signs; the private key stays out of anything derived or shown.
        described["c2pa"] = {
            "cert_chain_sha256": hashlib.sha256(settings.c2pa.cert_chain_pem).hexdigest(),
            "algorithm": settings.c2pa.algorithm,
            "timestamp_url": settings.c2pa.timestamp_url,
        }
    return _digest({"render_version": RENDER_VERSION, "settings": described})


Serves = tuple[tuple[str, Fit], ...] | None


def platform_fits(batch: GeneratedBatch, platforms: tuple[Platform, ...]) -> dict[str, Serves]:
    """Which render serves which platform: each render its own aspect's platforms ("native"); a platform
    no render was made for takes every render whose crop keeps the face ("cropped"). Renders without a
    recorded aspect (older or hand-made batches) serve every platform, cropped as needed."""
    native = {p.name: [i.key for i in batch.images if i.aspect and _same_aspect(i.aspect, p)] for p in platforms}
    fits: dict[str, Serves] = {}
    for image in batch.images:
        if not image.aspect:
            fits[image.key] = None
            continue
        fits[image.key] = tuple(
            (p.name, "native" if image.key in native[p.name] else "cropped")
            for p in platforms
            if image.key in native[p.name] or not native[p.name]
        )
    return fits


def _same_aspect(aspect: str, platform: Platform) -> bool:
    width, height = (int(part) for part in aspect.split(":"))
    return abs(width / height - platform.aspect) < 0.01


def batch_prefix(model: str, batch_id: str) -> str:
    return f"{asset_prefix(model, ASSET)}{batch_id}/"


def export_batch(
    storage: Storage, spec: ModelSpec, batch: GeneratedBatch, settings: ExportSettings, log: logging.Logger
) -> BatchExport:
    prefix = batch_prefix(spec.name, batch.batch_id)
    fingerprint = settings_fingerprint(settings)
    done = {obj.key for obj in storage.list(prefix + "renders/")}
    serves = platform_fits(batch, settings.platforms)
    jobs = [_Job.of(image, spec, fingerprint, prefix, batch.dry_run, serves[image.key]) for image in batch.images]
    records: dict[str, tuple[PlatformExport, ...]] = {}
    for job in jobs:
        if job.record_key in done:
            records[job.image.key] = _RenderRecord.model_validate_json(storage.get_bytes(job.record_key)).exports
    reused = len(records)
    todo = [job for job in jobs if job.image.key not in records]
    log.info(f"{ASSET}: {len(jobs)} images in batch {batch.batch_id}; {reused} already exported, {len(todo)} to render")
    rejected = []
    workers = 1 if len(todo) < _POOL_MIN_IMAGES else None
    for job, outcome in zip(todo, export_many(_sources(storage, todo), settings, workers), strict=True):
        if outcome.error is not None:
            log.warning(outcome.error)
            rejected.append(RejectedImage(key=job.image.key, reason=outcome.error))
            continue
        records[job.image.key] = _store(storage, job, outcome.rendered)
    exports = tuple(export for job in jobs for export in records.get(job.image.key, ()))
    manifests = _write_manifests(storage, spec, batch, settings, exports, prefix)
    index = PlatformExports(
        model=spec.name,
        dry_run=batch.dry_run,
        batch_id=batch.batch_id,
        settings_fingerprint=fingerprint,
        exports=exports,
        manifests=manifests,
        rejected=tuple(rejected),
    )
    return BatchExport(index=index, rendered=len(todo) - len(rejected), reused=reused)


@dataclass(frozen=True)
class _Job:
    image: GeneratedImage
    source: SourceImage  # without data: bytes are read only when the image is rendered
    stem: str
    record_key: str
    prefix: str

    @classmethod
    def of(
        cls, image: GeneratedImage, spec: ModelSpec, fingerprint: str, prefix: str, dry_run: bool, serves: Serves
    ) -> _Job:
        label = generated_label(spec, image.prompt, TRAINED_ALGORITHMIC_MEDIA, dry_run)
        identity = {"settings": fingerprint, "source": image.sha256, "label": dataclasses.asdict(label)}
        render_id = _digest({**identity, "serves": serves})[:12]
        stem = f"{PurePosixPath(image.key).stem}-{render_id}"
        source = SourceImage(name=image.key, data=b"", label=label, serves=serves)
        return cls(image, source, stem, f"{prefix}renders/{stem}.json", prefix)

    def key_for(self, platform: str) -> str:
        return f"{self.prefix}{platform}/{self.stem}.jpg"


def _sources(storage: Storage, jobs: list[_Job]) -> Iterator[SourceImage]:
    for job in jobs:
        yield dataclasses.replace(job.source, data=storage.get_bytes(job.image.key))


def _store(storage: Storage, job: _Job, rendered: tuple[Rendered, ...]) -> tuple[PlatformExport, ...]:
    exports = []
    for output in rendered:
        put = storage.put_bytes(job.key_for(output.platform), output.jpeg, "image/jpeg")
        exports.append(
            PlatformExport(
                key=put.key,
                platform=output.platform,
                width=output.width,
                height=output.height,
                sha256=put.sha256,
                source_key=job.image.key,
                source_sha256=job.image.sha256,
                digital_source_type=job.source.label.digital_source_type,
                crop=output.plan.strategy,
                face_kept=output.plan.face_kept,
                fit=output.fit,
            )
        )
    record = _RenderRecord(exports=tuple(exports))
    storage.put_bytes(job.record_key, record.model_dump_json(indent=2).encode(), "application/json")
    return record.exports


def _write_manifests(
    storage: Storage,
    spec: ModelSpec,
    batch: GeneratedBatch,
    settings: ExportSettings,
    exports: tuple[PlatformExport, ...],
    prefix: str,
) -> tuple[str, ...]:
    prompts = {image.key: image.prompt for image in batch.images}
    tags = hashtags(spec)
    keys = []
    for platform in settings.platforms:
        rows = [
            ManifestRow(
                file=PurePosixPath(export.key).name,
                platform=export.platform,
                width=export.width,
                height=export.height,
                sha256=export.sha256,
                prompt=prompts[export.source_key],
                suggested_caption=suggested_caption(prompts[export.source_key], spec),
                hashtags=tags,
                dry_run=batch.dry_run,
            )
            for export in exports
            if export.platform == platform.name
        ]
        key = f"{prefix}{platform.name}/manifest.csv"
        storage.put_bytes(key, manifest_csv(rows), "text/csv")
        keys.append(key)
    return tuple(keys)


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
