"""The swapped_faces asset, materialized per model partition against the fake MaxStudio (live) or the
local swapper (dry-run): results, never paying twice, faults, crashes, and the key staying secret."""

import json
import logging
from pathlib import Path

import dagster as dg
import pytest
from PIL import Image, ImageOps

from modelcrew_assets.handoffs import SwappedFaces, read_index
from modelcrew_assets.resources.storage_backends import StorageNotReachableError
from modelcrew_assets.settings import MissingCredentialError
from modelcrew_assets.storage_keys import targets_prefix
from modelcrew_assets.swapped_faces.assets import swapped_faces
from modelcrew_assets.swapped_faces.ledger import LedgerRecord, LedgerStore
from modelcrew_assets.swapped_faces.simulated import SimulatedSwapResource
from modelcrew_assets_tests.builders import jpeg_bytes, manifest_text, upload_model

MODEL = "blondie"


def materialize(instance, storage, face_swaps, config=None, raise_on_error=True):
    instance.add_dynamic_partitions("models", [MODEL])
    return dg.materialize(
        [swapped_faces],
        partition_key=MODEL,
        instance=instance,
        resources={"storage": storage, "face_swaps": face_swaps},
        run_config={"ops": {"swapped_faces": {"config": config}}} if config else None,
        raise_on_error=raise_on_error,
    )


def metadata(result) -> dict:
    [event] = result.get_asset_materialization_events()
    return {key: value.value for key, value in event.materialization.metadata.items()}


def ledger_records(storage) -> list[LedgerRecord]:
    prefix = LedgerStore(storage, MODEL).prefix
    return [LedgerRecord.model_validate_json(storage.get_bytes(obj.key)) for obj in storage.list(prefix)]


def test_dry_run_swaps_every_target_with_labelled_results(instance, local_storage, astronaut):
    upload_model(local_storage, astronaut, MODEL, targets=3)
    result = materialize(instance, local_storage, SimulatedSwapResource())

    meta = metadata(result)
    assert (meta["swapped"], meta["jobs_created"], meta["dry_run"]) == (3, 0, True)
    assert meta["preview"].startswith("![swapped faces](data:image/jpeg;base64,")
    assert meta["preview_uri"].endswith(f"models/{MODEL}/swapped_faces/preview.jpg")
    assert meta["dagster/uri"].endswith("models/blondie/swapped_faces")
    index = read_index(local_storage, MODEL, SwappedFaces)
    assert index.dry_run and len(index.images) == 3
    for image in index.images:
        sidecar = json.loads(local_storage.get_bytes(image.key.replace(".jpg", ".json")))
        assert sidecar["dry_run"] is True and sidecar["provider"] == "dry_run"
        assert sidecar["target_sha256"] == local_storage.content_sha256(image.target_key)
        assert image.face_box is not None

    again = metadata(materialize(instance, local_storage, SimulatedSwapResource()))
    assert (again["cached"], again["swapped"]) == (3, 0)


def test_live_run_with_local_storage_fails_before_any_call(instance, local_storage, astronaut, fake_maxstudio):
    upload_model(local_storage, astronaut, MODEL, targets=2)
    with pytest.raises(StorageNotReachableError, match="MODELCREW_STORAGE_URL=s3://"):
        materialize(instance, local_storage, fake_maxstudio.resource())
    assert sum(fake_maxstudio.stats.requests.values()) == 0


def test_live_run_without_key_fails_before_any_call(instance, s3_storage, astronaut, fake_maxstudio):
    upload_model(s3_storage, astronaut, MODEL, targets=2)
    with pytest.raises(MissingCredentialError, match="MAXSTUDIO_API_KEY"):
        materialize(instance, s3_storage, fake_maxstudio.resource(api_key=None))
    assert sum(fake_maxstudio.stats.requests.values()) == 0


def test_completed_partition_rematerialized_creates_zero_jobs(instance, s3_storage, astronaut, fake_maxstudio):
    upload_model(s3_storage, astronaut, MODEL, targets=4)
    first = metadata(materialize(instance, s3_storage, fake_maxstudio.resource()))
    assert (first["swapped"], first["jobs_created"]) == (4, 4)
    assert fake_maxstudio.stats.jobs_created == 4
    assert all(record.outcome == "done" for record in ledger_records(s3_storage))

    calls_before = sum(fake_maxstudio.stats.requests.values())
    second = metadata(materialize(instance, s3_storage, fake_maxstudio.resource()))
    assert (second["cached"], second["jobs_created"]) == (4, 0)
    assert fake_maxstudio.stats.jobs_created == 4
    assert sum(fake_maxstudio.stats.requests.values()) == calls_before


def test_identical_targets_cost_one_job(instance, s3_storage, astronaut, fake_maxstudio):
    upload_model(s3_storage, astronaut, MODEL, targets=1)
    same = s3_storage.get_bytes(f"{targets_prefix(MODEL)}target-000.jpg")
    s3_storage.put_bytes(f"{targets_prefix(MODEL)}copy-of-target.jpg", same)
    meta = metadata(materialize(instance, s3_storage, fake_maxstudio.resource()))
    assert fake_maxstudio.stats.jobs_created == 1
    assert (meta["swapped"], meta["duplicate_targets"]) == (1, 1)


@pytest.mark.slow
def test_faults_leave_every_target_swapped_or_listed_and_rerun_pays_only_for_failures(
    instance, s3_storage, astronaut, fake_maxstudio
):
    targets = 10
    manifest = manifest_text(MODEL, MODEL, extra="\n[swap]\nmin_success = 0.5\n")
    upload_model(s3_storage, astronaut, MODEL, targets=targets, manifest=manifest)
    faults = fake_maxstudio.faults
    faults.rate_429, faults.retry_after, faults.rate_503 = 0.2, "1", 0.1
    faults.job_failure_rate, faults.fail_next_jobs = 0.05, 1

    first = metadata(materialize(instance, s3_storage, fake_maxstudio.resource()))
    assert fake_maxstudio.stats.faults[429] > 0 and fake_maxstudio.stats.faults[503] > 0
    failed_jobs = len(fake_maxstudio.stats.failed_jobs)
    assert failed_jobs >= 1
    assert first["swapped"] + first["failed"] == targets
    assert "face too small to swap" in first["problems"]
    assert fake_maxstudio.stats.jobs_created <= targets + failed_jobs

    due = [r for r in ledger_records(s3_storage) if r.outcome != "done" and r.live_job("swap") is None]
    fake_maxstudio.faults = type(faults)()
    jobs_before = fake_maxstudio.stats.jobs_created
    second = metadata(materialize(instance, s3_storage, fake_maxstudio.resource()))
    assert fake_maxstudio.stats.jobs_created - jobs_before == len(due) == second["jobs_created"]
    assert second["swapped"] + second["cached"] == targets
    assert fake_maxstudio.stats.jobs_created == targets + failed_jobs


def test_crash_after_jobs_were_created_resumes_by_polling_the_ledger(
    instance, s3_storage, astronaut, fake_maxstudio, monkeypatch
):
    targets = 8
    upload_model(s3_storage, astronaut, MODEL, targets=targets)
    fake_maxstudio.faults.job_latency_s = 0.5
    original_save, recorded = LedgerStore.save, []

    def save_then_crash(self, record):
        saved = original_save(self, record)
        if record.outcome == "pending" and record.swap_jobs and record.swap_jobs[-1].status == "pending":
            recorded.append(record.swap_jobs[-1].job_id)
            if len(recorded) == 3:
                raise RuntimeError("simulated crash after 3 jobs")
        return saved

    monkeypatch.setattr(LedgerStore, "save", save_then_crash)
    resource = fake_maxstudio.resource(max_concurrency=4)
    crashed = materialize(instance, s3_storage, resource, raise_on_error=False)
    assert not crashed.success
    created_before_crash = fake_maxstudio.stats.jobs_created
    assert 3 <= created_before_crash < targets
    assert sorted(recorded) == sorted(f"swap-{n:05d}" for n in range(1, created_before_crash + 1))

    monkeypatch.setattr(LedgerStore, "save", original_save)
    # Jobs other tasks saw finish before the crash reached them are reused from the ledger; the rest,
    # still pending there, must be polled again rather than created again.
    ledgered = [
        LedgerRecord.model_validate_json(s3_storage.get_bytes(obj.key))
        for obj in s3_storage.list(f"models/{MODEL}/swapped_faces/ledger/")
    ]
    pending = {r.swap_jobs[-1].job_id for r in ledgered if r.outcome == "pending" and r.swap_jobs}
    assert pending and pending <= set(recorded) | {f"swap-{n:05d}" for n in range(1, created_before_crash + 1)}
    polls_before = dict(fake_maxstudio.stats.polls)
    resumed = metadata(materialize(instance, s3_storage, resource))
    assert resumed["jobs_created"] == targets - created_before_crash
    assert fake_maxstudio.stats.jobs_created == targets
    assert all(fake_maxstudio.stats.polls[job] > polls_before.get(job, 0) for job in pending)
    assert resumed["swapped"] == targets


def test_failed_jobs_below_min_success_fail_the_asset_and_rerun_retries_only_them(
    instance, s3_storage, astronaut, fake_maxstudio
):
    upload_model(s3_storage, astronaut, MODEL, targets=3)
    fake_maxstudio.faults.fail_next_jobs = 2
    with pytest.raises(dg.Failure) as failure:
        materialize(instance, s3_storage, fake_maxstudio.resource(max_concurrency=1))
    assert "only 1 of 3 targets were swapped, below swap.min_success = 80%" in failure.value.description
    assert failure.value.description.count("face too small to swap") == 2

    result = metadata(materialize(instance, s3_storage, fake_maxstudio.resource()))
    assert fake_maxstudio.stats.jobs_created == 3 + 2
    assert (result["swapped"], result["cached"], result["jobs_created"]) == (2, 1, 2)


def test_ambiguous_create_needs_attention_and_is_recreated_only_when_asked(
    instance, s3_storage, astronaut, fake_maxstudio
):
    upload_model(s3_storage, astronaut, MODEL, targets=1)
    fake_maxstudio.faults.create_hang_s = 1.0
    with pytest.raises(dg.Failure, match="needs_attention: swap: .*may have been accepted"):
        materialize(instance, s3_storage, fake_maxstudio.resource(read_timeout_s=0.3))
    [record] = ledger_records(s3_storage)
    assert record.outcome == "needs_attention" and record.open_ambiguity == "swap"
    assert fake_maxstudio.stats.requests["POST /swap-image"] == 1

    fake_maxstudio.faults.create_hang_s = 0.0
    with pytest.raises(dg.Failure, match="needs_attention"):
        materialize(instance, s3_storage, fake_maxstudio.resource())
    assert fake_maxstudio.stats.requests["POST /swap-image"] == 1

    meta = metadata(materialize(instance, s3_storage, fake_maxstudio.resource(), {"resubmit_ambiguous": True}))
    assert meta["swapped"] == 1 and fake_maxstudio.stats.requests["POST /swap-image"] == 2
    [record] = ledger_records(s3_storage)
    assert len(record.ambiguous) == 1 and record.open_ambiguity is None


def test_no_face_and_unreadable_targets_are_listed_not_fatal(instance, s3_storage, astronaut, fake_maxstudio):
    fake_maxstudio.faults.detect_with_dlib = True
    upload_model(s3_storage, astronaut, MODEL, targets=4)
    s3_storage.put_bytes(f"{targets_prefix(MODEL)}wall.jpg", jpeg_bytes(Image.new("RGB", (400, 300), "gray")))
    s3_storage.put_bytes(f"{targets_prefix(MODEL)}broken.jpg", b"\xff\xd8 not really a jpeg")
    meta = metadata(materialize(instance, s3_storage, fake_maxstudio.resource()))
    assert (meta["swapped"], meta["skipped_no_face"], meta["unreadable_targets"]) == (4, 1, 1)
    assert "wall.jpg: no_face" in meta["problems"] and "broken.jpg: unreadable" in meta["problems"]
    assert fake_maxstudio.stats.jobs_created == 4


def test_enhance_creates_and_ledgers_an_enhancer_job(instance, s3_storage, astronaut, fake_maxstudio):
    manifest = manifest_text(MODEL, MODEL, extra="\n[swap]\nenhance = true\n")
    upload_model(s3_storage, astronaut, MODEL, targets=2, manifest=manifest)
    meta = metadata(materialize(instance, s3_storage, fake_maxstudio.resource(price_per_job=0.05)))
    assert meta["jobs_created"] == 4 and fake_maxstudio.stats.requests["POST /image-enhancer"] == 2
    # Estimated before any job (2 targets x swap + enhance), then what the created jobs cost.
    assert (meta["cost_estimate_usd"], meta["cost_usd"]) == (0.2, 0.2)
    for image in read_index(s3_storage, MODEL, SwappedFaces).images:
        sidecar = json.loads(s3_storage.get_bytes(image.key.replace(".jpg", ".json")))
        assert len(sidecar["swap_job_ids"]) == 1 and len(sidecar["enhance_job_ids"]) == 1


def test_api_key_never_in_logs_events_or_metadata(instance, s3_storage, astronaut, fake_maxstudio, caplog):
    sentinel = "sk-live-SENTINEL-7f3a9c"
    fake_maxstudio.api_key = sentinel
    fake_maxstudio.faults.scripted = [429, 503]
    fake_maxstudio.faults.fail_next_jobs = 1
    manifest = manifest_text(MODEL, MODEL, extra="\n[swap]\nmin_success = 0.5\n")
    upload_model(s3_storage, astronaut, MODEL, targets=3, manifest=manifest)
    caplog.set_level(logging.DEBUG)
    result = materialize(instance, s3_storage, fake_maxstudio.resource(api_key=sentinel))
    assert metadata(result)["failed"] == 1 and fake_maxstudio.stats.faults[429] == 1

    # werkzeug is moto's (the fake S3's) access log, which prints every presigned URL it serves.
    texts = ["\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("werkzeug"))]
    texts += [repr(entry) for entry in instance.all_logs(result.run_id)]
    texts += [path.read_text(errors="replace") for path in Path(instance.root_directory).rglob("*") if path.is_file()]
    texts += [s3_storage.get_bytes(obj.key).decode(errors="replace") for obj in s3_storage.list("models/")]
    assert any("retry 1" in text for text in texts), "the capture must include the client's retry logs"
    for text in texts:
        assert sentinel not in text
        assert "X-Amz-Signature" not in text, "presigned URLs are sensitive and must not be logged"


@pytest.mark.parametrize(("faces", "swapped_boxes"), [("largest", 1), ("all", 2)])
def test_faces_option_swaps_the_largest_face_or_every_face(
    instance, s3_storage, astronaut, fake_maxstudio, faces, swapped_boxes
):
    two_faces = Image.new("RGB", (1100, 600), "white")
    two_faces.paste(astronaut, (0, 40))
    two_faces.paste(ImageOps.mirror(astronaut).resize((480, 480)), (600, 60))
    upload_model(s3_storage, astronaut, MODEL, targets=0, manifest=manifest_text(extra=f'[swap]\nfaces = "{faces}"\n'))
    s3_storage.put_bytes(f"{targets_prefix(MODEL)}two-faces.jpg", jpeg_bytes(two_faces))
    fake_maxstudio.faults.detect_with_dlib = True
    materialize(instance, s3_storage, fake_maxstudio.resource())
    [job] = [job for job in fake_maxstudio.jobs.values() if job.kind == "swap"]
    assert len(job.boxes) == swapped_boxes
    assert job.boxes[0][0] < 512  # the larger face (the full-size portrait on the left) always comes first
