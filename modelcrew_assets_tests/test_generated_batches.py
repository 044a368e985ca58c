"""generated_batches end to end in dry-run: the asset, the local GPU executor, the `batch` worker and the
stand-in generator; resume, reproducibility, caps, checks and the nightly schedule."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from modelcrew_assets.generated_batches.assets import BATCH_TAG, GeneratedBatchConfig, batch_id_for, generated_batches
from modelcrew_assets.generated_batches.checks import BATCH_IS_COMPLETE, EVERY_IMAGE_HAS_A_RECORD
from modelcrew_assets.generated_batches.prompt_packs import batch_json_key, image_key, record_key
from modelcrew_assets.generated_batches.schedule import generated_batches_job, nightly_generated_batches
from modelcrew_assets.handoffs import (
    Checkpoint,
    CheckpointEvaluations,
    GeneratedBatch,
    LoraCheckpoints,
    read_index,
    write_index,
)
from modelcrew_assets.resources.gpu import SimulatedGpuResource
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.storage_keys import face_prefix, manifest_key
from modelcrew_assets_tests.builders import jpeg_bytes, manifest_text
from modelcrew_assets_tests.fakes.runpod import API_KEY, FakeRunPod
from modelcrew_assets_tests.stand_in_executors import StandInRunPodPodsResource

MODEL = "blondie"
TINY = "64x64"


def lora_bytes(step: int) -> bytes:
    """A minimal safetensors file: no tensors, the ss_steps metadata the stand-in reads its likeness from."""
    header = json.dumps({"__metadata__": {"ss_steps": str(step)}}).encode()
    return len(header).to_bytes(8, "little") + header


def checkpoint(step: int, model: str = MODEL) -> Checkpoint:
    key = f"models/{model}/lora_checkpoints/r1/{MODEL}-step{step:08d}.safetensors"
    return Checkpoint(
        step=step, key=key, sha256=hashlib.sha256(lora_bytes(step)).hexdigest(), size=len(lora_bytes(step))
    )


def seed_model(storage: StorageResource, face, model: str = MODEL, generation: str = "images = 100\n") -> None:
    storage.put_bytes(manifest_key(model), manifest_text(model, model, extra="[generation]\n" + generation).encode())
    storage.put_bytes(face_prefix(model) + "face.jpg", jpeg_bytes(face.resize((128, 128))))
    steps = (500, 750, 1000)
    for step in steps:
        storage.put_bytes(checkpoint(step, model).key, lora_bytes(step))
    trained = LoraCheckpoints(
        model=model, run_id="r1", dataset_version="v1", base_model="sd_xl_base_1.0.safetensors",
        checkpoints=tuple(checkpoint(step, model) for step in steps),
    )  # fmt: skip
    write_index(storage, trained)
    write_index(
        storage,
        CheckpointEvaluations(
            model=model,
            run_id="e1",
            scores=(),
            chosen=checkpoint(750, model),
            reason="highest identity, not memorizing",
        ),
    )


def run_batch(instance, storage, gpu=None, **config) -> dg.ExecuteInProcessResult:
    if MODEL not in instance.get_dynamic_partitions("models"):
        instance.add_dynamic_partitions("models", [MODEL])
    gpu = gpu or SimulatedGpuResource(poll_seconds=0.05, pipes_poll_seconds=0.05)
    return dg.materialize(
        [generated_batches], partition_key=MODEL, instance=instance, resources={"storage": storage, "gpu": gpu},
        run_config={"ops": {"generated_batches": {"config": {"image_size": TINY, **config}}}}, raise_on_error=False,
    )  # fmt: skip


def metadata(result: dg.ExecuteInProcessResult) -> dict:
    values = result.asset_materializations_for_node("generated_batches")[0].metadata
    return {key: getattr(value, "value", value) for key, value in values.items()}


def checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(e.step_failure_data.error.to_string() for e in result.all_events if e.is_step_failure)


def test_interrupted_batch_resumes_rendering_only_the_missing_images(local_storage, astronaut, instance):
    seed_model(local_storage, astronaut)
    first = run_batch(instance, local_storage, batch_id="b1", max_images=37)
    assert first.success, failure_message(first)
    assert metadata(first)["rendered_this_run"] == 37 and metadata(first)["complete"] is False
    assert metadata(first)["stopped_by"] == "max_images"
    assert checks(first) == {EVERY_IMAGE_HAS_A_RECORD: True, BATCH_IS_COMPLETE: False}
    root = Path(local_storage.url.removeprefix("file://"))
    before = {i: (root / image_key(MODEL, "b1", i)).stat().st_mtime_ns for i in range(37)}

    second = run_batch(instance, local_storage, batch_id="b1")
    assert second.success, failure_message(second)
    assert metadata(second)["rendered_this_run"] == 63 and metadata(second)["already_stored"] == 37
    assert {i: (root / image_key(MODEL, "b1", i)).stat().st_mtime_ns for i in range(37)} == before
    logs = [record.user_message for record in instance.all_logs(second.run_id)]
    estimate_at = next(
        i for i, m in enumerate(logs) if "37 already stored, 63 to render" in m and "estimate: 63 images" in m
    )
    assert estimate_at < next(i for i, m in enumerate(logs) if "local worker started" in m)
    assert checks(second) == {EVERY_IMAGE_HAS_A_RECORD: True, BATCH_IS_COMPLETE: True}
    batch = GeneratedBatch.model_validate_json(local_storage.get_bytes(batch_json_key(MODEL, "b1")))
    assert [image.index for image in batch.images] == list(range(100)) and batch.complete
    assert read_index(local_storage, MODEL, GeneratedBatch) == batch


def test_rerun_of_a_complete_batch_launches_no_worker(local_storage, astronaut, instance):
    seed_model(local_storage, astronaut, generation="images = 3\n")
    assert run_batch(instance, local_storage, batch_id="b1").success
    again = run_batch(instance, local_storage, batch_id="b1")
    assert again.success and metadata(again)["rendered_this_run"] == 0
    assert metadata(again)["cost_usd"] == 0.0 and "nothing to render" in metadata(again)["gpu_job_id"]


def test_each_image_has_a_full_provenance_record(s3_storage, astronaut, instance):
    seed_model(s3_storage, astronaut, generation='images = 2\nsampler = "euler_a"\nsteps = 20\ncfg = 5.0\n')
    result = run_batch(instance, s3_storage, batch_id="b1")
    assert result.success, failure_message(result)
    batch = read_index(s3_storage, MODEL, GeneratedBatch)
    record = batch.images[1]
    assert record.prompt.startswith("blondie, ") and "blurry" in record.negative_prompt
    assert (record.sampler, record.steps, record.cfg, record.width, record.height) == ("euler_a", 20, 5.0, 64, 64)
    assert record.checkpoint_sha256 == checkpoint(750).sha256 and record.checkpoint_key == checkpoint(750).key
    assert record.base_model and record.generator == "stand-in" and record.dry_run and record.created_at
    assert s3_storage.content_sha256(record.key) == record.sha256
    assert json.loads(s3_storage.get_bytes(record_key(MODEL, "b1", 1)))["seed"] == record.seed
    meta = metadata(result)
    assert meta["dagster/row_count"] == 2 and meta["dry_run"] is True and meta["checkpoint_step"] == 750
    assert "data:image/jpeg;base64," in meta["contact_sheet"] and meta["dagster/uri"].endswith("b1/batch.json")
    assert meta["contact_sheet_uri"] == s3_storage.uri(f"models/{MODEL}/generated_batches/b1/contact_sheet.jpg")
    assert s3_storage.exists(f"models/{MODEL}/generated_batches/b1/contact_sheet.jpg")
    assert meta["seconds_per_image"] > 0 and meta["backend"] == "local"


def test_same_batch_id_and_seed_give_the_same_image_bytes(tmp_path, astronaut, instance):
    stores = [StorageResource(url=f"file://{tmp_path / name}") for name in ("one", "two")]
    for store in stores:
        seed_model(store, astronaut, generation="images = 3\n")
        assert run_batch(instance, store, batch_id="same").success
    images = [[store.get_bytes(image_key(MODEL, "same", index)) for index in range(3)] for store in stores]
    assert images[0] == images[1] and len(set(images[0])) == 3


def test_time_cap_stops_the_worker_cleanly_and_records_a_partial_batch(local_storage, astronaut, instance):
    seed_model(local_storage, astronaut, generation="images = 20\n")
    result = run_batch(instance, local_storage, batch_id="b1", max_gpu_minutes=0.0001)
    assert result.success, failure_message(result)
    meta = metadata(result)
    assert meta["stopped_by"] == "max_gpu_minutes" and meta["complete"] is False
    assert meta["rendered_this_run"] < 20 and meta["dagster/row_count"] == meta["rendered_this_run"]
    assert checks(result)[BATCH_IS_COMPLETE] is False
    batch = read_index(local_storage, MODEL, GeneratedBatch)
    assert batch.stopped_by == "max_gpu_minutes" and batch.planned == 20 and not batch.complete


def test_manual_checkpoint_step_overrides_the_evaluation(local_storage, astronaut, instance):
    seed_model(local_storage, astronaut, generation="images = 1\n")
    result = run_batch(instance, local_storage, batch_id="b1", checkpoint_step=1000)
    assert result.success and metadata(result)["checkpoint_choice"] == "manual"
    assert read_index(local_storage, MODEL, GeneratedBatch).images[0].checkpoint_sha256 == checkpoint(1000).sha256
    missing = run_batch(instance, local_storage, batch_id="b2", checkpoint_step=900)
    assert not missing.success and "choose one of 500, 750, 1000" in failure_message(missing)


def test_resuming_with_another_checkpoint_is_refused(local_storage, astronaut, instance):
    seed_model(local_storage, astronaut, generation="images = 2\n")
    assert run_batch(instance, local_storage, batch_id="b1", max_images=1).success
    changed = run_batch(instance, local_storage, batch_id="b1", checkpoint_step=1000)
    assert not changed.success and "use a new batch_id" in failure_message(changed)


def test_failed_worker_keeps_what_was_stored_in_batch_json_and_says_how_to_resume(local_storage, astronaut, instance):
    seed_model(local_storage, astronaut, generation="images = 4\n")
    assert run_batch(instance, local_storage, batch_id="b1", max_images=2).success
    local_storage.put_bytes(checkpoint(750).key, lora_bytes(750) + b"changed after evaluation")
    failed = run_batch(instance, local_storage, batch_id="b1")
    message = failure_message(failed)
    assert not failed.success and "does not match the sha256 recorded for the chosen checkpoint" in message
    assert "after 2 of 4 images" in message and "batch_id 'b1' to render only the missing ones" in message
    batch = GeneratedBatch.model_validate_json(local_storage.get_bytes(batch_json_key(MODEL, "b1")))
    assert len(batch.images) == 2 and batch.stopped_by == "worker failed" and not batch.complete


def test_batch_id_comes_from_config_then_the_schedule_tag_then_the_root_run():
    def batch_id(config: dict, tags: dict) -> str:
        return batch_id_for(GeneratedBatchConfig(**config), dg.DagsterRun(job_name="j", run_id="abcdef0123", tags=tags))

    assert batch_id({"batch_id": "mine"}, {BATCH_TAG: "nightly-2025-06-01"}) == "mine"
    assert batch_id({}, {BATCH_TAG: "nightly-2025-06-01"}) == "nightly-2025-06-01"
    assert batch_id({}, {}) == "run-abcdef01"
    # A re-execution of a failed run carries the root run's id, so it finishes the same batch.
    assert batch_id({}, {"dagster/root_run_id": "99887766aa"}) == "run-99887766"


def test_untagged_run_renders_into_its_own_batch(local_storage, astronaut, instance):
    seed_model(local_storage, astronaut, generation="images = 1\n")
    result = run_batch(instance, local_storage)
    assert result.success and metadata(result)["batch_id"] == f"run-{result.run_id[:8]}"


def repository(storage: StorageResource) -> dg.RepositoryDefinition:
    resources = {"storage": storage, "gpu": SimulatedGpuResource()}
    return dg.Definitions(
        assets=[generated_batches],
        jobs=[generated_batches_job],
        schedules=[nightly_generated_batches],
        resources=resources,
    ).get_repository_def()


def test_nightly_schedule_requests_one_run_per_model_with_deterministic_run_keys(local_storage, astronaut, instance):
    for model in ("blondie", "ruby"):
        seed_model(local_storage, astronaut, model=model)
    instance.add_dynamic_partitions("models", ["blondie", "ruby", "newcomer"])
    when = datetime(2025, 6, 1, 1, 0, tzinfo=UTC)
    requests = []
    for _ in range(2):
        with dg.build_schedule_context(
            instance=instance, scheduled_execution_time=when, resources={"storage": local_storage},
            repository_def=repository(local_storage),
        ) as context:  # fmt: skip
            requests.append(nightly_generated_batches.evaluate_tick(context).run_requests)
    first, second = requests
    assert [(r.partition_key, r.run_key) for r in first] == [
        ("blondie", "blondie:2025-06-01"),
        ("ruby", "ruby:2025-06-01"),
    ]
    assert [r.run_key for r in second] == [r.run_key for r in first]
    assert all(r.tags[BATCH_TAG] == "nightly-2025-06-01" for r in first)
    assert nightly_generated_batches.default_status == dg.DefaultScheduleStatus.STOPPED


def test_nightly_schedule_skips_when_no_model_has_a_checkpoint(local_storage, instance):
    instance.add_dynamic_partitions("models", ["newcomer"])
    with dg.build_schedule_context(
        instance=instance, scheduled_execution_time=datetime(2025, 6, 1, 1, tzinfo=UTC),
        resources={"storage": local_storage}, repository_def=repository(local_storage),
    ) as context:  # fmt: skip
        result = nightly_generated_batches.evaluate_tick(context)
    assert not result.run_requests and "checkpoint_evaluations first" in result.skip_message


def test_generated_batches_runs_in_the_gpu_pool():
    assert generated_batches.op.pool == "gpu"


def test_bad_batch_id_in_config_fails_before_any_rendering(local_storage, astronaut, instance):
    seed_model(local_storage, astronaut, generation="images = 1\n")
    result = run_batch(instance, local_storage, batch_id="../x")
    assert not result.success and "batch id" in failure_message(result)


@pytest.mark.slow
def test_batch_through_the_fake_runpod_resumes_on_a_new_pod_and_terminates_both(
    s3_storage, astronaut, instance, fake_runpod: FakeRunPod
):
    seed_model(s3_storage, astronaut, generation="images = 6\n")
    gpu = StandInRunPodPodsResource(
        api_key=API_KEY, graphql_url=fake_runpod.url, gpu_types=["NVIDIA GeForce RTX 4090"],
        poll_seconds=0.2, pipes_poll_seconds=0.2, pipes_flush_seconds=0.5, max_runtime_minutes=5,
    )  # fmt: skip
    first = run_batch(instance, s3_storage, gpu=gpu, batch_id="b1", max_images=2)
    assert first.success, failure_message(first)
    second = run_batch(instance, s3_storage, gpu=gpu, batch_id="b1")
    assert second.success, failure_message(second)
    assert (metadata(first)["rendered_this_run"], metadata(second)["rendered_this_run"]) == (2, 4)
    assert len(fake_runpod.pods) == 2 and all(pod.terminated is not None for pod in fake_runpod.pods.values())
    meta = metadata(second)
    assert meta["backend"] == "runpod_pod" and meta["cost_usd"] > 0 and meta["gpu_job_id"] in fake_runpod.pods
    assert meta["cost_estimate_usd"] > 0 and meta["gpu_minutes_estimate"] > 0
    assert checks(second) == {EVERY_IMAGE_HAS_A_RECORD: True, BATCH_IS_COMPLETE: True}
