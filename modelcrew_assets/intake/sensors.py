"""The upload sensor: new or changed uploads -> a `models` partition, an observation, and one run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import dagster as dg

from modelcrew_assets.intake.assets import model_pipeline_job, model_uploads
from modelcrew_assets.intake.upload_scan import ModelUploads, group_uploads
from modelcrew_assets.manifest import ManifestError, ModelSpec, parse_manifest
from modelcrew_assets.partitions import models_partitions
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.storage_keys import UPLOADS, upload_prefix

DATA_VERSION_TAG = "dagster/data_version"


@dataclass
class UploadsCursor:
    """The fingerprint of each model's uploads as last evaluated (valid or not), so nothing is reported
    or run twice for the same inputs, across ticks and daemon restarts."""

    fingerprints: dict[str, str] = field(default_factory=dict)
    invalid_folders: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, raw: str | None) -> UploadsCursor:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(data.get("fingerprints", {}), data.get("invalid_folders", []))

    def serialize(self) -> str:
        return json.dumps(
            {"fingerprints": self.fingerprints, "invalid_folders": self.invalid_folders}, sort_keys=True
        )


def run_key_for(uploads: ModelUploads) -> str:
    return f"{uploads.model}:{uploads.fingerprint[:16]}"


def load_spec(storage: StorageResource, uploads: ModelUploads) -> ModelSpec:
    """Read and validate the model's manifest; ManifestError names the file and the field."""
    assert uploads.manifest is not None
    source = uploads.manifest.key
    try:
        text = storage.get_bytes(source).decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestError(f"{source}: not UTF-8 text; save it as UTF-8 and upload it again") from None
    return parse_manifest(text, source=source, expected_name=uploads.model)


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
    listing = group_uploads(storage.list(f"{UPLOADS}/"))
    known_partitions = set(context.instance.get_dynamic_partitions(models_partitions.name))

    new_partitions: list[str] = []
    run_requests: list[dg.RunRequest] = []
    observations: list[dg.AssetObservation] = []
    problems: list[str] = []

    for folder in listing.invalid_folders:
        if folder not in cursor.invalid_folders:
            problems.append(
                f"{UPLOADS}/{folder}/: {folder!r} is not a valid model name (use a-z, 0-9, '_', '-'); "
                "rename the folder"
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
            spec = load_spec(storage, uploads)
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
        reason = "; ".join(problems) or f"no new or changed uploads ({len(listing.models)} models checked)"
        return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=cursor.serialize())
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[models_partitions.build_add_request(new_partitions)] if new_partitions else [],
        asset_events=observations,
        cursor=cursor.serialize(),
    )
