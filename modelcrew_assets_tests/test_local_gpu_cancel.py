"""The local GPU executor leaves no trainer behind (issue 23): after Ctrl-C or SIGTERM of `dagster asset
materialize` and after a step that fails while its worker is busy. The trainer is launched the way the
worker image launches kohya, through a launcher that behaves like `accelerate launch` (the training script
runs as its child and gets no signal from it); the stand-in trainer takes kohya's place inside it.

Every process the run starts inherits a marker in its environment, so /proc finds the worker's whole
tree whatever sessions, process groups or parents its members end up with."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from modelcrew_assets.lora_checkpoints.assets import lora_checkpoints
from modelcrew_assets.resources.gpu import LocalGpuResource
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets_tests.test_lora_checkpoints import MODEL, failure_message, seed_dataset

DEFS = Path(__file__).with_name("gpu_cancel_defs.py")
BIN = Path(sys.executable).parent
# What `accelerate launch` does on one GPU (accelerate/commands/launch.py, simple_launcher): the script runs
# in a child process, `Popen(cmd, env=...).wait()`, and no signal is forwarded to it. accelerate itself is
# not in the dev extra (it needs torch), so this one-liner stands in for it, and the stand-in trainer for
# sd-scripts' sdxl_train_network.py.
ACCELERATE_LAUNCH = "import subprocess, sys; sys.exit(subprocess.Popen([sys.executable, *sys.argv[1:]]).wait())"
TRAINER_LAUNCH = shlex.join([sys.executable, "-c", ACCELERATE_LAUNCH, "-m", "modelcrew_assets.worker.stand_in_trainer"])
TRAINER = ["-m", "modelcrew_assets.worker.stand_in_trainer"]
MARK = "MODELCREW_TEST_PROCESS_TREE"
LIMIT_S = 60


def marked(mark: str) -> dict[int, list[str]]:
    """The worker's tree: live processes (zombies excluded) that carry the marker and run the worker or
    the trainer (Dagster's own compute-log tailers carry it too), pid -> argv."""
    found = {}
    needle = f"{MARK}={mark}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if needle not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").rstrip("\0").split("\0")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if state != "Z" and any(arg.startswith("modelcrew_assets.worker") for arg in argv):
            found[int(proc.name)] = argv
    return found


def trainer_pid(mark: str, seconds: float = LIMIT_S) -> int:
    """Wait until the training script itself (accelerate's child) runs; its pid."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for pid, argv in marked(mark).items():
            if argv[1:3] == TRAINER:
                return pid
        time.sleep(0.1)
    raise AssertionError(f"no trainer started within {seconds} s: {marked(mark)}")


def worker_pid(mark: str) -> int:
    [pid] = [pid for pid, argv in marked(mark).items() if argv[1:] == ["-m", "modelcrew_assets.worker", "train"]]
    return pid


def wait_tree_gone(mark: str, seconds: float) -> dict[int, list[str]]:
    """What is still running of the tree after up to `seconds`."""
    deadline = time.monotonic() + seconds
    while (left := marked(mark)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.fixture
def mark(monkeypatch) -> str:
    value = uuid.uuid4().hex
    monkeypatch.setenv(MARK, value)
    monkeypatch.setenv("MODELCREW_STANDIN_STEP_SECONDS", "0.05")  # 1500 steps: about 75 s of training
    yield value
    for pid in marked(value):  # never leave a stray trainer on the machine, even when a test fails
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def home(tmp_path: Path, local_storage: StorageResource, mark: str, monkeypatch) -> Path:
    (tmp_path / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nrun_coordinator:\n  module: dagster.core.run_coordinator\n"
        "  class: DefaultRunCoordinator\n"
    )
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("MODELCREW_STORAGE_URL", local_storage.url)
    monkeypatch.setenv("MODELCREW_GPU_EXECUTOR", "local")
    monkeypatch.setenv("MODELCREW_TRAINER_LAUNCH", TRAINER_LAUNCH)
    seed_dataset(local_storage)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        instance.add_dynamic_partitions("models", [MODEL])
    return tmp_path


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_signal_to_dagster_asset_materialize_leaves_no_trainer(home, mark, sig, record_property):
    command = [str(BIN / "dagster"), "asset", "materialize", "-f", str(DEFS), "--select", "lora_checkpoints", "--partition", MODEL]  # fmt: skip
    with (home / "materialize.log").open("w") as log:
        cli = subprocess.Popen(command, env=os.environ.copy(), start_new_session=True, stdout=log, stderr=log)
    try:
        trainer_pid(mark)
        time.sleep(1)  # well into training
        sent = time.monotonic()
        os.killpg(cli.pid, sig)  # a terminal's Ctrl-C reaches the whole foreground group
        cli.wait(timeout=LIMIT_S)
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
    left = wait_tree_gone(mark, seconds=1)
    assert left == {}, f"processes left running after {sig.name}: {left}"
    record_property(f"{sig.name}_to_tree_gone_seconds", round(time.monotonic() - sent, 2))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs()
        assert run.status in (dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.FAILURE)
        logged = [entry.user_message for entry in instance.all_logs(run.run_id)]
    assert any(message.startswith("local pid-") and message.endswith(" terminated") for message in logged)


def materialize_while(instance, storage, gpu, mark: str, during) -> dg.ExecuteInProcessResult:
    """Run lora_checkpoints in this process while `during(step_ended)` acts on the running tree from a
    thread; `step_ended` is set once the run is over."""
    instance.add_dynamic_partitions("models", [MODEL])
    step_ended = threading.Event()
    failed: list[BaseException] = []

    def act() -> None:
        try:
            during(step_ended)
        except BaseException as error:  # end the run at once rather than wait for the training to finish
            failed.append(error)
            for pid in marked(mark):
                os.kill(pid, signal.SIGKILL)

    acting = threading.Thread(target=act)
    acting.start()
    try:
        result = dg.materialize(
            [lora_checkpoints], partition_key=MODEL, instance=instance, raise_on_error=False,
            resources={"storage": storage, "gpu": gpu},
        )  # fmt: skip
    finally:
        step_ended.set()
        acting.join()
    if failed:
        raise failed[0]
    return result


def logged_by_the_trainer(instance: dg.DagsterInstance, text: str, seconds: float = LIMIT_S) -> None:
    """Wait until the run's log (the worker forwards the trainer's output) has a line with `text`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for run in instance.get_runs():
            if any(text in entry.user_message for entry in instance.all_logs(run.run_id)):
                return
        time.sleep(0.1)
    raise AssertionError(f"the trainer logged no {text!r} within {seconds} s")


def test_worker_killed_mid_training_leaves_no_trainer(instance, local_storage, mark, record_property, monkeypatch):
    """The worker dies outright (an OOM kill): the step fails and the trainer it started must not outlive it.
    The trainer writes nothing for a while (as kohya does while it loads the base model or saves), so the
    broken pipe to its dead worker does not end it either."""
    monkeypatch.setenv("MODELCREW_STANDIN_STEP_SECONDS", "30")
    seed_dataset(local_storage)
    left: list[dict] = []

    def kill_the_worker(step_ended: threading.Event) -> None:
        trainer_pid(mark)
        logged_by_the_trainer(instance, "num epochs")  # its last line before the first (30 s) step
        killed = time.monotonic()
        os.kill(worker_pid(mark), signal.SIGKILL)
        while marked(mark) and not step_ended.wait(0.1):
            pass
        left.append(wait_tree_gone(mark, seconds=0.5))  # the step has ended: nothing of its tree may be left
        record_property("worker_sigkill_to_tree_gone_seconds", round(time.monotonic() - killed, 2))

    gpu = LocalGpuResource(trainer_launch=TRAINER_LAUNCH, lost_worker_retries=0)
    result = materialize_while(instance, local_storage, gpu, mark, kill_the_worker)
    assert not result.success and "ended without reporting a result" in failure_message(result)
    assert left == [{}], f"processes left running after the worker was killed: {left}"


@pytest.mark.slow
def test_step_over_its_time_budget_leaves_no_trainer(instance, local_storage, mark):
    seed_dataset(local_storage)
    gpu = LocalGpuResource(trainer_launch=TRAINER_LAUNCH, max_runtime_minutes=0.2)
    result = materialize_while(instance, local_storage, gpu, mark, lambda _: trainer_pid(mark))
    assert not result.success and "ran past the budget" in failure_message(result)
    left = wait_tree_gone(mark, seconds=0.5)  # the step has ended: nothing of its tree may be left
    assert left == {}, f"processes left running after the step failed: {left}"
