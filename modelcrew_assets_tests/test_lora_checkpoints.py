"""lora_checkpoints end to end: the asset, the GPU executor (fake RunPod, local) and the worker."""

from __future__ import annotations

import _thread
import io
import json
import threading
import time
import zipfile

import dagster as dg
import dagster._core.pipes.utils as pipes_utils
import pytest

from modelcrew_assets.handoffs import KohyaDataset, LoraCheckpoints, read_index, write_index
from modelcrew_assets.lora_checkpoints.assets import lora_checkpoints
from modelcrew_assets.lora_checkpoints.checks import EVERY_SAVE_STEP, VALID_SAFETENSORS
from modelcrew_assets.lora_checkpoints.runtime import estimate_runtime
from modelcrew_assets.resources.gpu import RunPodPodsResource, SimulatedGpuResource
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.storage_keys import manifest_key
from modelcrew_assets.worker.kohya import Recipe
from modelcrew_assets.worker.safetensors_header import parse_header
from modelcrew_assets_tests.builders import manifest_text
from modelcrew_assets_tests.fakes.runpod import API_KEY, FakeRunPod

MODEL = "blondie"
STEPS = [250, 500, 750, 1000, 1250, 1500]


@pytest.fixture(autouse=True)
def quick_pipes_close(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that was killed never sends Pipes' closed message; Dagster's reader then waits 10 s for
    stragglers. One second is plenty against a local moto server."""
    monkeypatch.setattr(pipes_utils, "WAIT_FOR_LOGS_AFTER_EXECUTION_INTERVAL", 1)


def seed_dataset(storage: StorageResource, model: str = MODEL, training: str = "") -> KohyaDataset:
    storage.put_bytes(manifest_key(model), manifest_text(model, model, training).encode())
    folder = f"30_{model} woman"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for index in range(3):
            bundle.writestr(f"img/{folder}/{index:03d}.jpg", b"\xff\xd8 not decoded by the stand-in")
            bundle.writestr(f"img/{folder}/{index:03d}.txt", f"{model}, a photo of a woman")
    zip_key = f"models/{model}/kohya_dataset/v1/dataset.zip"
    storage.put_bytes(zip_key, buffer.getvalue())
    dataset = KohyaDataset(
        model=model, version="v1" + "0" * 20, zip_key=zip_key, config_key=f"models/{model}/kohya_dataset/v1/dataset.toml",
        image_count=3, repeats=30, image_folder=folder,
    )  # fmt: skip
    write_index(storage, dataset)
    return dataset


def runpod(fake: FakeRunPod, **overrides) -> RunPodPodsResource:
    settings = dict(
        api_key=API_KEY, graphql_url=fake.url, gpu_types=["NVIDIA GeForce RTX 4090", "NVIDIA RTX A6000"],
        poll_seconds=0.2, pipes_poll_seconds=0.2, pipes_flush_seconds=1, max_runtime_minutes=2,
    )  # fmt: skip
    return RunPodPodsResource(**{**settings, **overrides})


def materialize(instance, storage, gpu, run_config=None) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions("models", [MODEL])
    return dg.materialize(
        [lora_checkpoints], partition_key=MODEL, instance=instance, resources={"storage": storage, "gpu": gpu},
        run_config=run_config, raise_on_error=False,
    )  # fmt: skip


def materialization_metadata(result: dg.ExecuteInProcessResult) -> dict:
    return result.asset_materializations_for_node("lora_checkpoints")[0].metadata


def checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    return failures[0].step_failure_data.error.to_string()


def test_full_run_on_runpod_stores_six_checkpoints_and_terminates_the_pod(
    s3_storage, fake_runpod, instance, record_property
):
    seed_dataset(s3_storage)
    result = materialize(instance, s3_storage, runpod(fake_runpod))
    assert result.success, failure_message(result)

    index = read_index(s3_storage, MODEL, LoraCheckpoints)
    assert [c.step for c in index.checkpoints] == STEPS
    for checkpoint in index.checkpoints:
        data = s3_storage.get_bytes(checkpoint.key)
        assert checkpoint.key.endswith(f"/{MODEL}-step{checkpoint.step:08d}.safetensors")
        assert s3_storage.content_sha256(checkpoint.key) == checkpoint.sha256 and len(data) == checkpoint.size
        assert parse_header(data).metadata["ss_network_dim"] == "16" == checkpoint.metadata["ss_network_dim"]
    samples = [o.key for o in s3_storage.list(f"models/{MODEL}/lora_checkpoints/{index.run_id}/samples/")]
    assert len(samples) == len(STEPS) * 2

    metadata = materialization_metadata(result)
    assert metadata["checkpoint_steps"].value == STEPS
    assert "data:image/jpeg;base64," in metadata["loss_curve"].value and "| 1500 |" in metadata["loss_curve"].value
    assert len(index.loss) > 100 and index.loss[-1][1] < index.loss[0][1]
    assert s3_storage.exists(f"models/{MODEL}/lora_checkpoints/{index.run_id}/loss.png")
    assert metadata["gpu_type"].value == "NVIDIA GeForce RTX 4090"
    assert metadata["cost_usd"].value > 0 and metadata["dry_run"].value is False
    # The estimate before the pod existed, at the executor's price, is in the same terms as what it cost.
    assert metadata["cost_estimate_usd"].value > 0 and "$0.79/h" in metadata["cost_estimate"].value
    assert checks(result) == {VALID_SAFETENSORS: True, EVERY_SAVE_STEP: True}

    pod = fake_runpod.only_pod()
    assert pod.terminated is not None and pod.process.poll() is not None
    assert metadata["gpu_job_id"].value == pod.id
    overhead = fake_runpod.billable_seconds(pod.id) - metadata["trainer_seconds"].value
    record_property("pod_billable_minus_trainer_seconds", round(overhead, 1))
    assert overhead <= 60, f"pod billed {overhead:.1f} s beyond the trainer's time"
    assert "RUNPOD_API_KEY" not in pod.env and API_KEY not in json.dumps(pod.env)


def test_trainer_dying_at_step_600_terminates_the_pod_and_keeps_250_and_500(s3_storage, fake_runpod, instance):
    seed_dataset(s3_storage)
    fake_runpod.pod_env["MODELCREW_STANDIN_DIE_AT"] = "600"
    result = materialize(instance, s3_storage, runpod(fake_runpod))

    assert not result.success
    message = failure_message(result)
    assert "kept checkpoints at steps [250, 500]" in message
    assert "CUDA out of memory" in message and "trainer exited with code 1 after step 599" in message
    pod = fake_runpod.only_pod()
    assert pod.terminated is not None
    stored = sorted(
        o.key for o in s3_storage.list(f"models/{MODEL}/lora_checkpoints/") if o.key.endswith(".safetensors")
    )
    assert [key.rsplit("-step", 1)[1] for key in stored] == ["00000250.safetensors", "00000500.safetensors"]
    attempt = [o.key for o in s3_storage.list(f"models/{MODEL}/lora_checkpoints/") if "/attempts/" in o.key]
    record = json.loads(s3_storage.get_bytes(attempt[0]))
    assert [c["step"] for c in record["checkpoints"]] == [250, 500] and record["gpu_job_id"] == pod.id


def test_resume_continues_from_the_state_a_dead_attempt_left(s3_storage, fake_runpod, instance):
    seed_dataset(s3_storage)
    resume = {"ops": {"lora_checkpoints": {"config": {"resume": True}}}}
    fake_runpod.pod_env["MODELCREW_STANDIN_DIE_AT"] = "600"
    assert not materialize(instance, s3_storage, runpod(fake_runpod), resume).success
    first_attempt = stored_checkpoint_hashes(s3_storage)
    assert sorted(first_attempt) == [250, 500]

    fake_runpod.pod_env.clear()
    result = materialize(instance, s3_storage, runpod(fake_runpod), resume)
    assert result.success, failure_message(result)
    metadata = materialization_metadata(result)
    assert metadata["resumed_from_step"].value == 500
    assert "--resume" in metadata["training_args"].value["command"]
    assert "--skip_until_initial_step" in metadata["training_args"].value["command"]
    # 3 images x 500 repeats: one epoch holds the 1500 steps, so kohya numbers the resumed steps 501..1500
    assert metadata["kohya_layout"].value == {
        "images": 3, "dataset_repeats": 30, "trainer_repeats": 500, "image_folder": "500_blondie woman",
        "epochs": 1, "batches_per_epoch": 1500,
    }  # fmt: skip
    index = read_index(s3_storage, MODEL, LoraCheckpoints)
    assert [c.step for c in index.checkpoints] == STEPS
    assert all(index.checkpoints[i].metadata["ss_steps"] == str(step) for i, step in enumerate(STEPS))
    # the first attempt's uploads are untouched, and the loss curve is keyed by kohya's true steps
    after = stored_checkpoint_hashes(s3_storage)
    assert {step: after[step] for step in (250, 500)} == first_attempt and sorted(after) == STEPS
    assert min(step for step, _ in index.loss) == 501 and max(step for step, _ in index.loss) == 1500
    assert checks(result) == {VALID_SAFETENSORS: True, EVERY_SAVE_STEP: True}
    assert all(pod.terminated is not None for pod in fake_runpod.pods.values())


def stored_checkpoint_hashes(storage: StorageResource) -> dict[int, str]:
    """step -> sha256 of every checkpoint stored anywhere under the model's lora_checkpoints/."""
    found = {}
    for item in storage.list(f"models/{MODEL}/lora_checkpoints/"):
        name = item.key.rsplit("/", 1)[-1]
        if name.startswith(f"{MODEL}-step") and "/state/" not in item.key:
            assert "/attempts/" not in item.key, f"a checkpoint was trained twice: {item.key}"
            found[int(name[-20:-12])] = storage.content_sha256(item.key)
    return found


@pytest.mark.slow
def test_pod_lost_mid_training_is_retried_and_resumes_from_the_stored_checkpoints(s3_storage, fake_runpod, instance):
    seed_dataset(s3_storage)
    fake_runpod.pod_env["MODELCREW_STANDIN_STEP_SECONDS"] = "0.01"
    fake_runpod.lose_pod_when = lambda: any(
        key.key.endswith("/train_state.json") for key in s3_storage.list(f"models/{MODEL}/lora_checkpoints/")
    )
    resume = {"ops": {"lora_checkpoints": {"config": {"resume": True}}}}
    gpu = runpod(fake_runpod, lost_worker_retry_seconds=0, closing_grace_seconds=2)
    result = materialize(instance, s3_storage, gpu, resume)
    assert result.success, failure_message(result)
    assert len(fake_runpod.pods) == 2 and all(pod.terminated is not None for pod in fake_runpod.pods.values())
    assert materialization_metadata(result)["resumed_from_step"].value >= 250
    assert [c.step for c in read_index(s3_storage, MODEL, LoraCheckpoints).checkpoints] == STEPS
    assert any(e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY for e in result.all_events)


def test_first_gpu_type_without_capacity_falls_back_to_the_next(s3_storage, fake_runpod, instance):
    seed_dataset(s3_storage)
    fake_runpod.no_capacity.add("NVIDIA GeForce RTX 4090")
    result = materialize(instance, s3_storage, runpod(fake_runpod))
    assert result.success, failure_message(result)
    assert fake_runpod.deploy_attempts == ["NVIDIA GeForce RTX 4090", "NVIDIA RTX A6000"]
    assert materialization_metadata(result)["gpu_type"].value == "NVIDIA RTX A6000"
    assert fake_runpod.only_pod().terminated is not None


def test_budget_exceeded_terminates_the_pod_with_a_clear_error(s3_storage, fake_runpod, instance):
    seed_dataset(s3_storage)
    fake_runpod.pod_env["MODELCREW_STANDIN_STEP_SECONDS"] = "0.05"
    result = materialize(instance, s3_storage, runpod(fake_runpod, max_runtime_minutes=0.05))
    assert not result.success
    assert "ran past the budget of 0.05 minutes (max_runtime_minutes) and was terminated" in failure_message(result)
    pod = fake_runpod.only_pod()
    assert pod.terminated is not None and pod.process.poll() is not None


def test_cancelled_run_terminates_the_pod_within_30_seconds(s3_storage, fake_runpod, instance):
    seed_dataset(s3_storage)
    fake_runpod.pod_env["MODELCREW_STANDIN_STEP_SECONDS"] = "0.05"
    interrupted_at: list[float] = []

    def cancel_when_training() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not fake_runpod.pods:
            time.sleep(0.05)
        time.sleep(1.5)
        interrupted_at.append(time.monotonic())
        _thread.interrupt_main()  # what a cancel from the UI does to the op: an interrupt in its thread

    threading.Thread(target=cancel_when_training, daemon=True).start()
    with pytest.raises((KeyboardInterrupt, dg.DagsterExecutionInterruptedError)):
        instance.add_dynamic_partitions("models", [MODEL])
        dg.materialize(
            [lora_checkpoints], partition_key=MODEL, instance=instance,
            resources={"storage": s3_storage, "gpu": runpod(fake_runpod)},
        )  # fmt: skip
    pod = fake_runpod.only_pod()
    assert pod.terminated is not None, "pod left running after the run was cancelled"
    assert pod.terminated - interrupted_at[0] <= 30
    assert pod.process.poll() is not None


def test_dry_run_trains_with_the_stand_in_on_the_local_executor(local_storage, instance):
    seed_dataset(local_storage)
    result = materialize(instance, local_storage, SimulatedGpuResource())
    assert result.success, failure_message(result)
    index = read_index(local_storage, MODEL, LoraCheckpoints)
    assert index.dry_run is True and [c.step for c in index.checkpoints] == STEPS
    metadata = materialization_metadata(result)
    assert metadata["dry_run"].value is True and metadata["backend"].value == "local"
    assert checks(result) == {VALID_SAFETENSORS: True, EVERY_SAVE_STEP: True}


def test_local_training_folder_is_kept_and_named_after_a_failure_and_removed_after_success(
    local_storage, instance, tmp_path, monkeypatch
):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))  # the worker process makes its training folder here
    seed_dataset(local_storage)
    monkeypatch.setenv("MODELCREW_STANDIN_DIE_AT", "600")
    failed = materialize(instance, local_storage, SimulatedGpuResource())
    assert not failed.success
    [kept] = scratch.glob("modelcrew-train-*")
    assert (kept / "output").is_dir()
    logs = [event.message for event in instance.all_logs(failed.run_id) if event.message]
    assert any(f"training folder kept for inspection: {kept}" in message for message in logs)

    monkeypatch.delenv("MODELCREW_STANDIN_DIE_AT")
    assert materialize(instance, local_storage, SimulatedGpuResource()).success  # resumes, then finishes
    assert list(scratch.glob("modelcrew-train-*")) == [kept]


def test_final_weights_are_stored_as_the_last_step_when_it_is_no_save_step(local_storage, instance):
    seed_dataset(local_storage, training="\n[training]\nmax_train_steps = 1400\n")
    result = materialize(instance, local_storage, SimulatedGpuResource())
    assert result.success, failure_message(result)
    index = read_index(local_storage, MODEL, LoraCheckpoints)
    assert [c.step for c in index.checkpoints] == [250, 500, 750, 1000, 1250, 1400]
    last = index.checkpoints[-1]
    assert last.key.endswith(f"/{MODEL}-step00001400.safetensors") and last.metadata["ss_steps"] == "1400"
    assert checks(result) == {VALID_SAFETENSORS: True, EVERY_SAVE_STEP: True}
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == EVERY_SAVE_STEP)
    assert evaluation.metadata["expected_steps"].value == [250, 500, 750, 1000, 1250, 1400]


def test_a_state_at_max_train_steps_is_finished_training_and_launches_no_trainer(local_storage, instance):
    seed_dataset(local_storage)
    resume = {"ops": {"lora_checkpoints": {"config": {"resume": True}}}}
    assert materialize(instance, local_storage, SimulatedGpuResource(), resume).success
    before = stored_checkpoint_hashes(local_storage)

    result = materialize(instance, local_storage, SimulatedGpuResource(), resume)
    assert result.success, failure_message(result)
    metadata = materialization_metadata(result)
    assert metadata["finished_before_start"].value is True and metadata["resumed_from_step"].value == 1500
    assert metadata["training_args"].value["command"] == []  # no trainer was started
    assert [c.step for c in read_index(local_storage, MODEL, LoraCheckpoints).checkpoints] == STEPS
    assert stored_checkpoint_hashes(local_storage) == before
    assert checks(result) == {VALID_SAFETENSORS: True, EVERY_SAVE_STEP: True}


def test_time_budget_defaults_to_an_estimate_from_the_step_count(local_storage, instance):
    seed_dataset(local_storage)
    result = materialize(instance, local_storage, SimulatedGpuResource())
    assert result.success, failure_message(result)
    metadata = materialization_metadata(result)
    assert metadata["runtime_budget_source"].value == "estimate"
    # 10 boot + 3 load (+ 3 latents x 0.5 s) + 1500 x 2.0 s + 12 samples x 15 s = 66.03 min; x1.5, rounded up
    assert metadata["runtime_budget_minutes"].value == 100
    assert "2.0 s/step" in metadata["runtime_estimate"].value

    capped = materialize(instance, local_storage, SimulatedGpuResource(max_runtime_minutes=7))
    assert materialization_metadata(capped)["runtime_budget_source"].value == "executor"
    assert materialization_metadata(capped)["runtime_budget_minutes"].value == 7


def test_runtime_estimate_takes_the_slowest_fallback_gpu_and_keeps_a_floor():
    recipe = Recipe()
    fast_then_slow = estimate_runtime(recipe, 20, 2, ["NVIDIA H100 80GB HBM3", "NVIDIA RTX A6000"])
    assert fast_then_slow.gpu == "NVIDIA RTX A6000" and fast_then_slow.seconds_per_step == 1.6
    assert fast_then_slow.training_minutes == 40.0 and fast_then_slow.budget_minutes == 85
    assert estimate_runtime(recipe, 20, 2, []).seconds_per_step == 2.0  # local box: unknown GPU
    short = estimate_runtime(Recipe(max_train_steps=100, save_every_n_steps=50), 20, 2, ["NVIDIA H200"])
    assert short.budget_minutes == 30  # the floor: boot and load dominate
    larger = estimate_runtime(Recipe(resolution=2048), 20, 2, ["NVIDIA RTX A6000"])
    assert larger.training_minutes == 160.0  # four times the pixels per step
