"""The worker's heartbeat (worker/heartbeat.py): it keeps a busy but quiet worker alive past the
executor's silence timeout, and it never shows up among the messages a stage reads (`WorkerRun.messages`).
The worker is the real one (`python -m modelcrew_assets.worker train` on the local executor), training
slowly with the stand-in trainer, so it sends no custom message between its start and its one checkpoint."""

import time

import dagster as dg
import pytest

from modelcrew_assets.resources.gpu import GpuExecutorResource, SimulatedGpuResource
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.worker.messages import HEARTBEAT
from modelcrew_assets_tests.test_lora_checkpoints import failure_message, seed_dataset

QUIET_SECONDS = 4  # 20 steps of 0.2 s, one checkpoint at the end
SILENCE_TIMEOUT = 1.5
EXTRAS: dict = {}


@dg.asset
def quiet_training(context: dg.AssetExecutionContext, storage: StorageResource, gpu: GpuExecutorResource):
    """What a stage sees of the worker: its messages' types, in order."""
    run = gpu.run(context, worker_args=["train"], extras=EXTRAS, storage=storage)
    return dg.MaterializeResult(metadata={"message_types": [m.type for m in run.messages]})


@pytest.fixture
def quiet_worker(local_storage: StorageResource, monkeypatch) -> StorageResource:
    monkeypatch.setenv("MODELCREW_STANDIN_STEP_SECONDS", f"{QUIET_SECONDS / 20:g}")
    dataset = seed_dataset(local_storage)
    EXTRAS.clear()
    EXTRAS.update(
        storage_url=local_storage.url, dataset_zip_key=dataset.zip_key, image_folder=dataset.image_folder,
        output_prefix="models/blondie/lora_checkpoints/quiet/", output_name="blondie",
        recipe={"max_train_steps": 20, "save_every_n_steps": 20}, sample_prompts=["a"], negative_prompt="b",
    )  # fmt: skip
    return local_storage


def train_quietly(instance, storage, heartbeat_seconds: float) -> dg.ExecuteInProcessResult:
    gpu = SimulatedGpuResource(
        heartbeat_seconds=heartbeat_seconds, silence_timeout_seconds=SILENCE_TIMEOUT,
        lost_worker_retries=0,
    )  # fmt: skip
    return dg.materialize(
        [quiet_training], instance=instance, resources={"storage": storage, "gpu": gpu}, raise_on_error=False
    )


def test_worker_sending_only_heartbeats_stays_alive_and_heartbeats_stay_out_of_its_messages(instance, quiet_worker):
    started = time.monotonic()
    result = train_quietly(instance, quiet_worker, heartbeat_seconds=0.25)
    assert result.success, failure_message(result)
    assert time.monotonic() - started > QUIET_SECONDS > SILENCE_TIMEOUT  # it really was quiet that long
    types = result.asset_materializations_for_node("quiet_training")[0].metadata["message_types"].value
    assert HEARTBEAT not in types and types[-1] == "result" and "checkpoint" in types


def test_without_heartbeats_the_same_quiet_worker_is_taken_for_lost(instance, quiet_worker):
    """The control: what keeps the worker above alive is its heartbeat, nothing else it sends."""
    result = train_quietly(instance, quiet_worker, heartbeat_seconds=60)
    assert not result.success
    assert "no Pipes message or heartbeat for" in failure_message(result)
