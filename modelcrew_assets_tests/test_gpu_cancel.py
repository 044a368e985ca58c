"""Cancelling a training run stops the GPU (issue 23), against the fake RunPod that restarts exited
containers and bills until the pod is terminated: Ctrl-C and SIGTERM of `dagster asset materialize`
(multiprocess executor: the step process gets SIGINT twice, the second one during the cleanup), the UI's
terminate (GraphQL terminateRun -> run launcher -> gRPC cancel -> SIGINT in the run worker), and a run
worker killed with SIGKILL, which only the pod sweeper can clean up: by its run's status when the code server
lived to mark the run failed, by its stale liveness tag when nothing did."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster_graphql.client.client_queries import TERMINATE_RUN_JOB_MUTATION
from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql, materialize_assets

from modelcrew_assets.gpu_sweeper.sensors import build_gpu_pod_sweeper, gpu_pod_sweeper
from modelcrew_assets.resources.gpu.executor import GPU_ALIVE_TAG
from modelcrew_assets_tests.fakes.runpod import API_KEY, FakeRunPod
from modelcrew_assets_tests.test_lora_checkpoints import MODEL, runpod, seed_dataset

pytestmark = pytest.mark.slow  # each test starts a real run process and waits out a cancel

DEFS = Path(__file__).with_name("gpu_cancel_defs.py")
DAGSTER = Path(sys.executable).with_name("dagster")
LIMIT_S = 60


@pytest.fixture
def home(tmp_path: Path, s3_storage, fake_runpod: FakeRunPod, monkeypatch) -> Path:
    """A Dagster home on disk shared with the processes the test starts; training slow enough to cancel."""
    # Runs launched straight away (no daemon here), by the default launcher the UI's terminate talks to.
    (tmp_path / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nrun_coordinator:\n  module: dagster.core.run_coordinator\n"
        "  class: DefaultRunCoordinator\n"
    )
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("MODELCREW_STORAGE_URL", s3_storage.url)
    monkeypatch.setenv("RUNPOD_GRAPHQL_URL", fake_runpod.url)
    fake_runpod.pod_env["MODELCREW_STANDIN_STEP_SECONDS"] = "0.05"
    seed_dataset(s3_storage)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        instance.add_dynamic_partitions("models", [MODEL])
    return tmp_path


def start_materialize(home: Path) -> subprocess.Popen:
    command = [
        str(DAGSTER),
        "asset",
        "materialize",
        "-f",
        str(DEFS),
        "--select",
        "lora_checkpoints",
        "--partition",
        MODEL,
    ]
    with (home / "materialize.log").open("w") as log:
        return subprocess.Popen(command, env=os.environ.copy(), start_new_session=True, stdout=log, stderr=log)  # fmt: skip


def wait_for_training(fake: FakeRunPod, seconds: float = 120) -> None:
    """Until the pod's worker is past its first Pipes flush, i.e. really running paid work."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if fake.pods and time.monotonic() - next(iter(fake.pods.values())).created > 4:
            return
        time.sleep(0.1)
    raise AssertionError("no pod was created")


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def assert_pod_gone(fake: FakeRunPod, since: float, record_property, what: str) -> None:
    pod = fake.only_pod()
    assert pod.terminated is not None, f"pod left billing after {what}: {pod.timeline}"
    record_property(f"{what}_to_pod_terminated_seconds", round(pod.terminated - since, 2))
    assert pod.terminated - since <= LIMIT_S
    assert fake.listed_pods() == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_signal_to_dagster_asset_materialize_terminates_the_pod(home, fake_runpod, sig, record_property):
    cli = start_materialize(home)
    try:
        wait_for_training(fake_runpod)
        sent = time.monotonic()
        os.killpg(cli.pid, sig)  # a terminal's Ctrl-C reaches the whole foreground group
        cli.wait(timeout=LIMIT_S)
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
    assert_pod_gone(fake_runpod, sent, record_property, sig.name)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs()
        logged = [entry.user_message for entry in instance.all_logs(run.run_id)]
    assert f"runpod_pod {fake_runpod.only_pod().id} terminated" in logged, "the step's own cleanup did not end the pod"


def test_terminate_from_the_ui_terminates_the_pod(home, fake_runpod, record_property):
    with dg.DagsterInstance.from_config(str(home)) as instance:
        with define_out_of_process_context(str(DEFS), "defs", instance) as context:
            [launched] = materialize_assets(context, [dg.AssetKey("lora_checkpoints")], partition_keys=[MODEL])
            run_id = launched.data["launchPipelineExecution"]["run"]["runId"]
            try:
                wait_for_training(fake_runpod, seconds=60)
            except AssertionError:
                run = instance.get_run_by_id(run_id)
                tail = [e.user_message for e in instance.all_logs(run_id)][-8:]
                raise AssertionError(f"run {run.status}: {tail}") from None
            sent = time.monotonic()
            answer = execute_dagster_graphql(context, TERMINATE_RUN_JOB_MUTATION, {"runId": run_id})
            assert answer.data["terminateRun"]["__typename"] == "TerminateRunSuccess", answer.data
            deadline = time.monotonic() + LIMIT_S
            while not instance.get_run_by_id(run_id).is_finished and time.monotonic() < deadline:
                time.sleep(0.2)
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.CANCELED
    assert_pod_gone(fake_runpod, sent, record_property, "ui_terminate")


def test_run_worker_killed_with_sigkill_leaves_the_pod_to_the_sweeper(home, fake_runpod, record_property):
    cli = start_materialize(home)
    wait_for_training(fake_runpod)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs()
        assert GPU_ALIVE_TAG in instance.get_run_by_id(run.run_id).tags
        killed = time.monotonic()
        os.killpg(cli.pid, signal.SIGKILL)
        cli.wait()
        pod = fake_runpod.only_pod()
        time.sleep(1)
        assert pod.terminated is None and pod.process.poll() is None, "the fake pod should outlive its orchestrator"

        sweeper = build_gpu_pod_sweeper(stale_after_seconds=3)
        gpu = runpod(fake_runpod)
        time.sleep(max(0.0, 3.5 - (time.monotonic() - killed)))
        with dg.build_sensor_context(instance=instance, resources={"gpu": gpu}) as sweep:
            result = sweeper(sweep)
    assert isinstance(result, dg.SkipReason) and f"terminated RunPod pod {pod.id}" in result.skip_message
    assert_pod_gone(fake_runpod, killed, record_property, "sigkill")
    assert API_KEY not in result.skip_message


def test_run_worker_killed_under_the_code_server_has_its_pod_swept_at_the_next_tick(home, fake_runpod, record_property):
    """The DefaultRunLauncher's code server marks a run whose worker process died as failed, so the default
    sweeper (no short stale threshold) ends its pod at its next tick."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        with define_out_of_process_context(str(DEFS), "defs", instance) as context:
            [launched] = materialize_assets(context, [dg.AssetKey("lora_checkpoints")], partition_keys=[MODEL])
            run_id = launched.data["launchPipelineExecution"]["run"]["runId"]
            wait_for_training(fake_runpod, seconds=60)
            logged = " ".join(entry.user_message for entry in instance.all_logs(run_id))
            run_worker = int(re.search(r"multiprocess executor: parent process \(pid: (\d+)\)", logged).group(1))
            orphans = children_of(run_worker)  # its step process, which an OOM kill of the run worker spares
            killed = time.monotonic()
            os.kill(run_worker, signal.SIGKILL)
            try:
                deadline = time.monotonic() + 10
                while not instance.get_run_by_id(run_id).is_finished and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
                record_property("sigkill_to_run_failed_seconds", round(time.monotonic() - killed, 2))
                with dg.build_sensor_context(instance=instance, resources={"gpu": runpod(fake_runpod)}) as sweep:
                    result = gpu_pod_sweeper(sweep)
            finally:
                for pid in orphans:  # would otherwise retry its terminate against the stopped fake for 90 s
                    os.kill(pid, signal.SIGKILL)
    pod = fake_runpod.only_pod()
    assert f"terminated RunPod pod {pod.id} ({pod.name}): its run is FAILURE" in result.skip_message
    assert_pod_gone(fake_runpod, killed, record_property, "code_server_sigkill")
