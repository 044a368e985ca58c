"""The pod sweeper (gpu_sweeper/) against the fake RunPod, on a real Dagster instance with real runs in it:
it ends the pods nothing else will end and never touches a pod of a live run or one it did not create."""

from __future__ import annotations

import logging
import threading
import time

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test

from modelcrew_assets.gpu_sweeper.sensors import STALE_AFTER_SECONDS, SWEEP_INTERVAL_SECONDS, gpu_pod_sweeper
from modelcrew_assets.lora_checkpoints.assets import lora_checkpoints
from modelcrew_assets.resources.gpu import (
    GpuExecutorResource,
    PodTerminationError,
    RunPodPodsResource,
    SimulatedGpuResource,
)
from modelcrew_assets.resources.gpu.executor import GPU_ALIVE_TAG
from modelcrew_assets.resources.gpu.runpod_pods import pod_name
from modelcrew_assets_tests.fakes.runpod import API_KEY, FakeRunPod
from modelcrew_assets_tests.test_lora_checkpoints import (  # noqa: F401 (quick_pipes_close is autouse)
    MODEL,
    failure_message,
    quick_pipes_close,
    runpod,
    seed_dataset,
)


class Recorded(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


def tick(instance: dg.DagsterInstance, gpu, logged: Recorded | None = None) -> dg.SkipReason:
    """One sensor tick; what it logs (the tick's log in the UI) lands in `logged`."""
    with dg.build_sensor_context(instance=instance, resources={"gpu": gpu}) as context:
        if logged is not None:
            context.log.addHandler(logged)
        result = gpu_pod_sweeper(context)
    assert isinstance(result, dg.SkipReason), "the sweeper requests no runs"
    return result


def run_with(instance: dg.DagsterInstance, status: dg.DagsterRunStatus, alive_seconds_ago: float | None = None):
    tags = {} if alive_seconds_ago is None else {GPU_ALIVE_TAG: f"{time.time() - alive_seconds_ago:.0f}"}
    return create_run_for_test(instance, job_name="__ASSET_JOB", status=status, tags=tags)


def pod_of(fake: FakeRunPod, run_id: str):
    return fake.add_idle_pod(pod_name(run_id))


def terminated_ids(fake: FakeRunPod) -> set[str]:
    return {request["variables"]["podId"] for request in fake.requests if "podTerminate" in request["query"]}


def test_pods_the_platform_did_not_create_are_never_touched(instance, fake_runpod: FakeRunPod):
    finished = run_with(instance, dg.DagsterRunStatus.SUCCESS)
    names = [
        "my-notebook",
        "modelcrew-1a2b3c4d",  # the earlier 8-character scheme: cannot name a run unambiguously
        f"modelcrew-{finished.run_id}",  # no launch suffix
        f"other-tool-{finished.run_id}-abc123",
        f"modelcrew-{finished.run_id.upper()}-abc123",
        f"{pod_name(finished.run_id)}-copy",
    ]
    for name in names:
        fake_runpod.add_idle_pod(name)
    result = tick(instance, runpod(fake_runpod))
    assert result.skip_message == "nothing to sweep (0 pod(s) in use)"
    assert terminated_ids(fake_runpod) == set()
    assert sorted(p["name"] for p in fake_runpod.listed_pods()) == sorted(names)


@pytest.mark.parametrize(
    "status", [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
)
def test_pod_of_a_finished_run_is_terminated(instance, fake_runpod: FakeRunPod, status):
    run = run_with(instance, status, alive_seconds_ago=1)  # even a fresh liveness tag: the run is over
    pod = pod_of(fake_runpod, run.run_id)
    logged = Recorded()
    result = tick(instance, runpod(fake_runpod), logged)
    said = f"terminated RunPod pod {pod.id} ({pod.name}): its run is {status.value}"
    assert result.skip_message == f"{said}; 0 pod(s) still in use"
    assert logged.lines == [f"WARNING {said}"]
    assert pod.terminated is not None and fake_runpod.listed_pods() == []
    assert API_KEY not in " ".join([*logged.lines, result.skip_message])


def test_pod_of_a_run_unknown_to_the_instance_is_terminated(instance, fake_runpod: FakeRunPod):
    pod = pod_of(fake_runpod, "0b9f6c1e-3d2a-4c5b-8e7f-112233445566")
    result = tick(instance, runpod(fake_runpod))
    assert "its run is not in this Dagster instance" in result.skip_message
    assert terminated_ids(fake_runpod) == {pod.id} and fake_runpod.listed_pods() == []


def test_pod_of_a_live_run_is_left_alone(instance, fake_runpod: FakeRunPod):
    live = run_with(instance, dg.DagsterRunStatus.STARTED, alive_seconds_ago=STALE_AFTER_SECONDS - 30)
    canceling = run_with(instance, dg.DagsterRunStatus.CANCELING, alive_seconds_ago=5)  # its step is ending it
    pods = [pod_of(fake_runpod, live.run_id), pod_of(fake_runpod, canceling.run_id)]
    first = tick(instance, runpod(fake_runpod))
    second = tick(instance, runpod(fake_runpod))
    assert first.skip_message == second.skip_message == "nothing to sweep (2 pod(s) in use)"
    assert terminated_ids(fake_runpod) == set() and all(pod.terminated is None for pod in pods)


def test_pod_of_a_started_run_whose_worker_went_quiet_is_terminated(instance, fake_runpod: FakeRunPod):
    """A run worker killed outright while nothing marked its run failed (no code server left to notice)."""
    dead = run_with(instance, dg.DagsterRunStatus.STARTED, alive_seconds_ago=STALE_AFTER_SECONDS + 5)
    live = run_with(instance, dg.DagsterRunStatus.STARTED, alive_seconds_ago=2)
    dead_pod, live_pod = pod_of(fake_runpod, dead.run_id), pod_of(fake_runpod, live.run_id)
    result = tick(instance, runpod(fake_runpod))
    assert f"terminated RunPod pod {dead_pod.id}" in result.skip_message
    assert "has not seen its worker for" in result.skip_message and "1 pod(s) still in use" in result.skip_message
    assert terminated_ids(fake_runpod) == {dead_pod.id} and live_pod.terminated is None


def test_a_pod_runpod_will_not_terminate_fails_the_tick_after_the_others_are_ended(instance, fake_runpod: FakeRunPod):
    stuck, other = (pod_of(fake_runpod, run_with(instance, dg.DagsterRunStatus.FAILURE).run_id) for _ in range(2))
    fake_runpod.refuse_terminate.add(stuck.id)
    logged = Recorded()
    with dg.build_sensor_context(instance=instance, resources={"gpu": runpod(fake_runpod)}) as context:
        context.log.addHandler(logged)
        with pytest.raises(PodTerminationError, match=f"RunPod pod {stuck.id} could not be terminated"):
            gpu_pod_sweeper(context)
    assert other.terminated is not None and stuck.terminated is None
    assert [line.split(" ", 1)[0] for line in logged.lines] == ["ERROR", "WARNING"]
    assert f"terminated RunPod pod {other.id}" in logged.lines[1]
    fake_runpod.refuse_terminate.clear()  # RunPod answers again: the next tick ends it
    assert f"terminated RunPod pod {stuck.id}" in tick(instance, runpod(fake_runpod)).skip_message
    assert fake_runpod.listed_pods() == []


def test_stale_threshold_is_several_tag_refreshes_and_a_few_minutes_at_most():
    """Never ends a healthy run's pod (a refresh period, a state poll, one failed tag write and a slow
    RunPod answer fit in it several times over) and bounds the waste after an unnoticed SIGKILL."""
    executor = GpuExecutorResource.model_fields
    refresh = executor["liveness_tag_seconds"].default + executor["poll_seconds"].default
    assert STALE_AFTER_SECONDS >= 4 * refresh
    assert STALE_AFTER_SECONDS + SWEEP_INTERVAL_SECONDS <= 5 * 60


def test_sweeper_skips_with_a_reason_for_the_local_executor(instance, fake_runpod: FakeRunPod):
    pod_of(fake_runpod, run_with(instance, dg.DagsterRunStatus.SUCCESS).run_id)
    result = tick(instance, SimulatedGpuResource())
    assert result.skip_message == "the GPU executor is local, not RunPod: no pods to sweep"
    assert fake_runpod.requests == []


def test_sweeper_skips_with_a_reason_without_a_runpod_api_key(instance, fake_runpod: FakeRunPod):
    pod_of(fake_runpod, run_with(instance, dg.DagsterRunStatus.SUCCESS).run_id)
    result = tick(instance, RunPodPodsResource(api_key=None, graphql_url=fake_runpod.url))
    assert result.skip_message == "RUNPOD_API_KEY is not set: no RunPod account to sweep"
    assert fake_runpod.requests == []


def test_a_pod_being_launched_by_a_run_with_an_old_liveness_tag_is_left_alone(instance, s3_storage, fake_runpod):
    """A run inherits an old tag from an earlier GPU step, or from its parent run (run_retries copies tags).
    A tick that lands after RunPod made the pod and before the step heard of it must not end the pod."""
    seed_dataset(s3_storage)
    instance.add_dynamic_partitions("models", [MODEL])
    fake_runpod.hold_deploy_answer = threading.Event()
    seen: list[dg.SkipReason] = []

    def tick_during_the_launch() -> None:
        deadline = time.monotonic() + 60
        try:
            while not fake_runpod.pods and time.monotonic() < deadline:
                time.sleep(0.05)
            seen.append(tick(instance, runpod(fake_runpod)))
        finally:
            fake_runpod.hold_deploy_answer.set()

    sweeper = threading.Thread(target=tick_during_the_launch)
    sweeper.start()
    result = dg.materialize(
        [lora_checkpoints], partition_key=MODEL, instance=instance, raise_on_error=False,
        resources={"storage": s3_storage, "gpu": runpod(fake_runpod, lost_worker_retries=0, closing_grace_seconds=1)},
        tags={GPU_ALIVE_TAG: f"{time.time() - 3600:.0f}"},
    )  # fmt: skip
    sweeper.join()
    assert [reason.skip_message for reason in seen] == ["nothing to sweep (1 pod(s) in use)"]
    assert result.success, failure_message(result)
    assert fake_runpod.listed_pods() == []
