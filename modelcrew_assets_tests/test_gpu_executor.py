"""GPU executor edges: before any spend, the interface the generate stages reuse, and a fake RunPod that
restarts exited containers and bills until the pod is stopped or terminated."""

import signal

import dagster as dg
import pytest

from modelcrew_assets.resources.gpu import (
    GpuExecutorResource,
    NoGpuCapacityError,
    RunPodPodsResource,
    SimulatedGpuResource,
)
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.settings import MissingCredentialError
from modelcrew_assets_tests.fakes.runpod import API_KEY, FakeRunPod
from modelcrew_assets_tests.test_lora_checkpoints import (  # noqa: F401 (quick_pipes_close is autouse)
    failure_message,
    materialization_metadata,
    materialize,
    quick_pipes_close,
    runpod,
    seed_dataset,
)

EXTRAS = {"storage_url": "set by the test"}


@dg.asset
def gpu_probe(
    context: dg.AssetExecutionContext, storage: StorageResource, gpu: GpuExecutorResource
) -> dg.MaterializeResult:
    run = gpu.run(context, worker_args=["train"], extras=EXTRAS, storage=storage)
    return dg.MaterializeResult(metadata={"job_id": run.job_id, "ok": bool(run.result and run.result.ok)})


def probe(instance: dg.DagsterInstance, storage: StorageResource, gpu: GpuExecutorResource) -> BaseException:
    with pytest.raises(Exception) as raised:
        dg.materialize([gpu_probe], instance=instance, resources={"storage": storage, "gpu": gpu})
    return raised.value


def test_runpod_without_api_key_fails_before_creating_a_pod(instance, s3_storage, fake_runpod: FakeRunPod):
    error = probe(instance, s3_storage, RunPodPodsResource(api_key=None, graphql_url=fake_runpod.url))
    assert isinstance(error, MissingCredentialError) and "RUNPOD_API_KEY" in str(error)
    assert fake_runpod.requests == []


def test_runpod_with_local_storage_says_pods_need_s3(instance, local_storage, fake_runpod: FakeRunPod):
    error = probe(instance, local_storage, RunPodPodsResource(api_key=API_KEY, graphql_url=fake_runpod.url))
    assert "MODELCREW_STORAGE_URL=s3://" in str(error)
    assert fake_runpod.requests == []


def test_no_capacity_for_any_gpu_type_names_them_and_leaves_no_pod(instance, s3_storage, fake_runpod: FakeRunPod):
    types = ["NVIDIA GeForce RTX 4090", "NVIDIA L40S"]
    fake_runpod.no_capacity.update(types)
    error = probe(
        instance, s3_storage, RunPodPodsResource(api_key=API_KEY, graphql_url=fake_runpod.url, gpu_types=types)
    )
    assert isinstance(error, NoGpuCapacityError) and "NVIDIA GeForce RTX 4090, NVIDIA L40S" in str(error)
    assert fake_runpod.deploy_attempts == types and fake_runpod.pods == {}


def test_local_executor_returns_the_workers_messages_and_cost(instance, local_storage):
    dataset = seed_dataset(local_storage)
    EXTRAS.clear()
    EXTRAS.update(
        storage_url=local_storage.url, dataset_zip_key=dataset.zip_key, image_folder=dataset.image_folder,
        output_prefix="models/blondie/lora_checkpoints/probe/", output_name="blondie",
        recipe={"max_train_steps": 20, "save_every_n_steps": 10}, sample_prompts=["a"], negative_prompt="b",
    )  # fmt: skip
    result = dg.materialize(
        [gpu_probe], instance=instance, resources={"storage": local_storage, "gpu": SimulatedGpuResource()}
    )
    metadata = result.asset_materializations_for_node("gpu_probe")[0].metadata
    assert metadata["ok"].value is True and metadata["job_id"].value.startswith("pid-")
    assert [o.key.rsplit("/", 1)[1] for o in local_storage.list("models/blondie/lora_checkpoints/probe/blondie-")] == [
        "blondie-step00000010.safetensors",
        "blondie-step00000020.safetensors",
    ]


def events(pod) -> list[str]:
    return [event for _, event in pod.timeline]


def test_machine_without_resources_falls_through_to_the_next_gpu_type(s3_storage, fake_runpod: FakeRunPod, instance):
    seed_dataset(s3_storage)
    fake_runpod.no_resources.add("NVIDIA GeForce RTX 4090")
    result = materialize(instance, s3_storage, runpod(fake_runpod))
    assert result.success, failure_message(result)
    assert fake_runpod.deploy_attempts == ["NVIDIA GeForce RTX 4090", "NVIDIA RTX A6000"]
    assert materialization_metadata(result)["gpu_type"].value == "NVIDIA RTX A6000"


def test_finished_worker_stops_its_own_pod_and_its_container_never_runs_twice(s3_storage, fake_runpod, instance):
    seed_dataset(s3_storage)
    gpu = runpod(fake_runpod, heartbeat_seconds=0.5, silence_timeout_seconds=5)
    result = materialize(instance, s3_storage, gpu)
    assert result.success, failure_message(result)
    pod = fake_runpod.only_pod()
    assert events(pod)[:2] == ["created", "container started"] and events(pod)[-1] == "terminated"
    assert pod.container_starts == 1, f"RunPod restarted the finished worker: {events(pod)}"
    assert fake_runpod.listed_pods() == []


def test_worker_killed_before_closing_pipes_ends_the_pod_instead_of_rerunning(
    s3_storage, fake_runpod, instance, record_property
):
    """An OOM kill mid-training: RunPod restarts the container; it must not train again."""
    seed_dataset(s3_storage)
    fake_runpod.pod_env["MODELCREW_STANDIN_STEP_SECONDS"] = "0.02"
    fake_runpod.fault_after = 4  # after the first Pipes flush (1 s)
    gpu = runpod(fake_runpod, lost_worker_retries=0, closing_grace_seconds=1)
    result = materialize(instance, s3_storage, gpu)
    assert not result.success
    pod = fake_runpod.only_pod()
    killed = next(t for t, event in pod.timeline if event == "container got SIGKILL")
    record_property("killed_to_terminated_seconds", round(pod.terminated - killed, 1))
    assert pod.terminated - killed <= 15, events(pod)
    assert pod.container_starts <= 2 and "stopped" in events(pod), events(pod)
    assert fake_runpod.listed_pods() == []


def test_worker_that_never_reports_is_terminated_after_the_startup_timeout(
    s3_storage, fake_runpod, instance, record_property
):
    """A worker that dies before its first Pipes flush, every time (a broken image): not billed to the budget."""
    seed_dataset(s3_storage)
    fake_runpod.fault_after, fake_runpod.fault_containers = 0.3, 1000
    gpu = runpod(fake_runpod, startup_timeout_seconds=4, lost_worker_retries=0, closing_grace_seconds=1)
    result = materialize(instance, s3_storage, gpu)
    assert not result.success
    assert "sent no Pipes message within" in failure_message(result)
    pod = fake_runpod.only_pod()
    record_property("never_reporting_pod_billed_seconds", round(fake_runpod.billable_seconds(pod.id), 1))
    assert fake_runpod.billable_seconds(pod.id) <= 15 and pod.container_starts >= 2
    assert fake_runpod.listed_pods() == []


def test_hung_worker_is_terminated_after_the_silence_timeout(s3_storage, fake_runpod, instance, record_property):
    seed_dataset(s3_storage)
    fake_runpod.pod_env["MODELCREW_STANDIN_STEP_SECONDS"] = "0.02"
    fake_runpod.fault_after, fake_runpod.container_fault = 4, signal.SIGSTOP
    gpu = runpod(
        fake_runpod, heartbeat_seconds=0.5, silence_timeout_seconds=4, lost_worker_retries=0, closing_grace_seconds=1
    )
    result = materialize(instance, s3_storage, gpu)
    assert not result.success
    pod = fake_runpod.only_pod()
    frozen = next(t for t, event in pod.timeline if event == "container got SIGSTOP")
    record_property("hung_to_terminated_seconds", round(pod.terminated - frozen, 1))
    assert pod.terminated - frozen <= 15, events(pod)
    assert fake_runpod.listed_pods() == []
