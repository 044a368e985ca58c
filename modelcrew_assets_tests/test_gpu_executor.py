"""GPU executor edges that stop before any spend, and the interface the generate stages reuse."""

import dagster as dg
import pytest

from modelcrew_assets.resources.gpu import GpuExecutorResource, LocalGpuResource, NoGpuCapacityError, RunPodPodsResource
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.settings import MissingCredentialError
from modelcrew_assets_tests.fakes.runpod import API_KEY, FakeRunPod
from modelcrew_assets_tests.test_lora_checkpoints import quick_pipes_close, seed_dataset  # noqa: F401 (autouse)

EXTRAS = {"storage_url": "set by the test"}


@dg.asset
def gpu_probe(context: dg.AssetExecutionContext, storage: StorageResource, gpu: GpuExecutorResource) -> dg.MaterializeResult:
    run = gpu.run(context, worker_args=["train"], extras=EXTRAS, storage=storage)
    return dg.MaterializeResult(metadata={"job_id": run.job_id, "ok": bool(run.result and run.result["ok"])})


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
    error = probe(instance, s3_storage, RunPodPodsResource(api_key=API_KEY, graphql_url=fake_runpod.url, gpu_types=types))
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
        [gpu_probe], instance=instance, resources={"storage": local_storage, "gpu": LocalGpuResource(dry_run=True)}
    )
    metadata = result.asset_materializations_for_node("gpu_probe")[0].metadata
    assert metadata["ok"].value is True and metadata["job_id"].value.startswith("pid-")
    assert [o.key.rsplit("/", 1)[1] for o in local_storage.list("models/blondie/lora_checkpoints/probe/blondie-")] == [
        "blondie-step00000010.safetensors",
        "blondie-step00000020.safetensors",
    ]
