"""The upload sensor: new or changed uploads -> a `models` partition, an observation, and one run."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import dagster as dg
from botocore.exceptions import BotoCoreError, ClientError

from modelcrew_assets.handoffs import read_model_spec
from modelcrew_assets.intake.assets import model_pipeline_job, model_uploads
from modelcrew_assets.intake.upload import UploadError
from modelcrew_assets.intake.upload_events import UploadEventQueue, UploadEvents, UploadQueueSettings
from modelcrew_assets.intake.upload_scan import ModelUploads, group_uploads, is_junk_name
from modelcrew_assets.intake.zip_intake import ZipIntakeError, ZipLimits, unpack_model_zip
from modelcrew_assets.manifest import ManifestError, ModelSpec
from modelcrew_assets.partitions import models_partitions
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.resources.storage_backends import StoredObject
from modelcrew_assets.settings import UPLOAD_QUEUE_URL_ENV
from modelcrew_assets.storage_keys import MODEL_SLUG, UPLOADS, manifest_key, upload_prefix

DATA_VERSION_TAG = "dagster/data_version"


@dataclass
class UploadsCursor:
    """The fingerprint of each model's uploads as last evaluated (valid or not), so nothing is reported
    or run twice for the same inputs, across ticks and daemon restarts."""

    fingerprints: dict[str, str] = field(default_factory=dict)
    invalid_folders: list[str] = field(default_factory=list)
    # uploads/<model>.zip key -> etag once unpacked, "etag|manifest etag" when refused: read once per version.
    zips: dict[str, str] = field(default_factory=dict)
    # When uploads/ was last listed in full (epoch seconds); with a queue, the reconciliation is due from it.
    listed_at: float = 0.0
    # Receipt handles of the queue messages this tick took: the next tick, which reads this cursor and so
    # knows the result is stored, deletes them. A failed tick leaves them to come back after the timeout.
    received: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, raw: str | None) -> UploadsCursor:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(
            data.get("fingerprints", {}),
            data.get("invalid_folders", []),
            data.get("zips", {}),
            data.get("listed_at", 0.0),
            data.get("received", []),
        )

    def serialize(self) -> str:
        return json.dumps(
            {
                "fingerprints": self.fingerprints,
                "invalid_folders": self.invalid_folders,
                "zips": self.zips,
                "listed_at": self.listed_at,
                "received": self.received,
            },
            sort_keys=True,
        )


def run_key_for(uploads: ModelUploads) -> str:
    return f"{uploads.model}:{uploads.fingerprint[:16]}"


def observation_for(storage: StorageResource, uploads: ModelUploads, spec: ModelSpec) -> dg.AssetObservation:
    metadata = {
        "dagster/uri": dg.MetadataValue.path(storage.uri(upload_prefix(uploads.model))),
        "face_images": len(uploads.faces),
        "target_photos": len(uploads.targets),
        "hand_captions": len(uploads.captions),
        "trigger": spec.trigger,
        "class_word": spec.model.class_word,
        "consent_basis": spec.consent.basis,
        "fingerprint": uploads.fingerprint[:16],
    }
    if uploads.empty_files:
        metadata["empty_files_ignored"] = ", ".join(uploads.empty_files)
    return dg.AssetObservation(
        asset_key=model_uploads.key,
        partition=uploads.model,
        metadata=metadata,
        tags={DATA_VERSION_TAG: uploads.fingerprint[:16]},
    )


@dg.sensor(
    name="model_uploads_sensor",
    description="Registers each model found under uploads/ as a partition and runs the pipeline for it "
    "whenever its uploads change.",
    target=model_pipeline_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def model_uploads_sensor(
    context: dg.SensorEvaluationContext, storage: StorageResource
) -> dg.SensorResult | dg.SkipReason:
    cursor = UploadsCursor.parse(context.cursor)
    problems: list[str] = []
    events = upload_events_for_tick(context, storage, cursor)
    scope = None if events is None else events.names
    if scope is None:
        cursor.listed_at = time.time()
    objects = upload_objects(storage, scope)
    if unpack_new_zips(context, storage, objects, cursor, problems):
        objects = upload_objects(storage, scope)
    listing = group_uploads(objects)
    known_partitions = set(context.instance.get_dynamic_partitions(models_partitions.name))

    new_partitions: list[str] = []
    run_requests: list[dg.RunRequest] = []
    observations: list[dg.AssetObservation] = []

    for folder in listing.invalid_folders:
        if folder not in cursor.invalid_folders:
            problems.append(
                f"{UPLOADS}/{folder}/: {folder!r} is not a valid model name (use a-z, 0-9, '_', '-'); rename the folder"
            )
            cursor.invalid_folders.append(folder)

    for model, uploads in listing.models.items():
        if cursor.fingerprints.get(model) == uploads.fingerprint:
            continue
        cursor.fingerprints[model] = uploads.fingerprint
        if uploads.missing:
            problems.append(f"{model}: waiting for {', '.join(uploads.missing)}")
            continue
        try:
            spec = read_model_spec(storage, model)
        except ManifestError as error:
            problems.append(str(error))
            continue
        if model not in known_partitions:
            new_partitions.append(model)
        observations.append(observation_for(storage, uploads, spec))
        run_requests.append(
            dg.RunRequest(
                run_key=run_key_for(uploads),
                partition_key=model,
                tags={"modelcrew/model": model, "modelcrew/uploads": uploads.fingerprint[:16]},
            )
        )

    for problem in problems:
        context.log.warning(problem)
    if not run_requests:
        checked = f"{len(listing.models)} models checked"
        if events is not None:
            checked += f", named by {len(events.receipts)} upload events"
        reason = "; ".join(problems) or f"no new or changed uploads ({checked})"
        return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=cursor.serialize())
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[models_partitions.build_add_request(new_partitions)] if new_partitions else [],
        asset_events=observations,
        cursor=cursor.serialize(),
    )


def unpack_new_zips(
    context: dg.SensorEvaluationContext,
    storage: StorageResource,
    objects: list[StoredObject],
    cursor: UploadsCursor,
    problems: list[str],
) -> bool:
    """Unpack each new or changed uploads/<model>.zip into uploads/<model>/ (the zip stays as uploaded).
    Returns whether anything was written; the model's own fingerprint then decides about a run, so the
    same photos zipped again start nothing."""
    limits = ZipLimits.from_env()
    etags = {obj.key: obj.etag for obj in objects}
    wrote = False
    for obj in objects:
        folder, _, name = obj.key.partition("/")[2].rpartition("/")
        if folder or not name.lower().endswith(".zip") or is_junk_name(name):
            continue
        model = name[: -len(".zip")]
        # A refused zip is retried when it changes, or when a model.toml it lacked arrives beside it.
        refused_state = f"{obj.etag}|{etags.get(manifest_key(model), '')}"
        if cursor.zips.get(obj.key) in (obj.etag, refused_state):
            continue
        cursor.zips[obj.key] = refused_state
        if not MODEL_SLUG.fullmatch(model):
            problems.append(f"{obj.key}: {model!r} is not a valid model name (use a-z, 0-9, '_', '-'); rename the zip")
            continue
        try:
            report = unpack_model_zip(storage, model, storage.get_bytes(obj.key), obj.key, limits)
        except (ZipIntakeError, UploadError) as error:
            problems.append(str(error))
            continue
        cursor.zips[obj.key] = obj.etag
        context.log.info(
            f"{obj.key}: unpacked {len(report.uploaded)} new files into {upload_prefix(model)}, "
            f"{len(report.duplicates)} already stored" + "".join(f"; {item}" for item in report.ignored)
        )
        wrote = wrote or bool(report.uploaded)
    return wrote


def upload_events_for_tick(
    context: dg.SensorEvaluationContext, storage: StorageResource, cursor: UploadsCursor
) -> UploadEvents | None:
    """This tick's uploads/ events from the queue, or None when the tick lists uploads/ in full: no queue,
    local storage, the queue unreachable, or the periodic reconciliation due (so a lost event loses nothing)."""
    settings = UploadQueueSettings.from_env()
    received, cursor.received = cursor.received, []
    if settings is None:
        return None
    if storage.is_local:
        context.log.warning(
            f"{UPLOAD_QUEUE_URL_ENV} is set but storage is local: S3 events cannot describe local files, "
            f"so the sensor lists {UPLOADS}/ every tick; unset it, or use s3:// storage"
        )
        return None
    queue = UploadEventQueue(settings, storage.region)
    try:
        # The cursor we were handed is stored, so the tick that received these has its result safe.
        failures = queue.delete(received)
        events = queue.receive(storage.key_of_s3_object)
    except (BotoCoreError, ClientError) as error:
        context.log.warning(f"upload queue {settings.queue_url}: {error}; listing all of {UPLOADS}/ this tick instead")
        return None
    if failures:
        context.log.info(
            f"{len(failures)} upload events could not be deleted ({', '.join(sorted(set(failures)))}); they "
            "come back after the visibility timeout and start nothing new"
        )
    for line in events.test_events:
        context.log.info(line)
    for line in events.malformed:
        context.log.warning(line)
    cursor.received = list(events.receipts)
    if time.time() - cursor.listed_at >= settings.reconcile_seconds:
        return None
    return events


def upload_objects(storage: StorageResource, names: frozenset[str] | None) -> list[StoredObject]:
    """Every object under uploads/ (names None), or just uploads/<name>/ and uploads/<name>.zip for each name."""
    if names is None:
        return list(storage.list(f"{UPLOADS}/"))
    objects: list[StoredObject] = []
    for name in sorted(names):
        objects += storage.list(upload_prefix(name))
        zipped = storage.head(f"{UPLOADS}/{name}.zip")
        if zipped is not None:
            objects.append(zipped)
    return objects
