"""The worker as a local process: a studio's own GPU box (and, in stand_in.py, the simulated executor)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import ClassVar

import dagster as dg
from pydantic import Field

from modelcrew_assets.resources.gpu.executor import GpuExecutorResource, WorkerHandle
from modelcrew_assets.resources.storage import StorageResource

# Set in the worker's environment, one value per launch; every process below it inherits it.
TREE_TOKEN_ENV = "MODELCREW_WORKER_TREE"


class LocalProcess(WorkerHandle):
    def __init__(self, process: subprocess.Popen, gpu_type: str, tree_token: str):
        self.process = process
        self.job_id = f"pid-{process.pid}"
        self.gpu_type = gpu_type
        self.cost_per_hour = 0.0
        self.tree_token = tree_token

    def exited(self) -> str | None:
        code = self.process.poll()
        return None if code is None else f"process exited with code {code}"

    def terminate(self, timeout_s: float | None = None) -> None:
        """SIGTERM to the worker's process group (the worker then kills its trainer, which runs in a
        session of its own), SIGKILL after a grace period, then every process of its tree still alive.
        The last part runs even when the worker is already gone: a worker killed outright (OOM) leaves
        its trainer running, and `accelerate launch` leaves its training process when it is killed."""
        grace = min(10.0, timeout_s or 10.0)
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait()
        _kill_tree(self.tree_token, grace)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    for send in (os.killpg, os.kill):
        try:
            send(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _tree(token: str) -> list[int]:
    """Live processes that inherited the worker's tree token, whatever their session or parent now
    (orphans are re-parented); from /proc (Linux), elsewhere none and the process group has to do."""
    needle = f"{TREE_TOKEN_ENV}={token}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            carries = needle in (proc / "environ").read_bytes().split(b"\0")
            if carries and (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":  # not a zombie
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or another user's
            continue
    return found


def _kill_tree(token: str, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while left := _tree(token):
        for pid in left:
            _signal_group(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            return
        time.sleep(0.1)


class LocalGpuResource(GpuExecutorResource):
    """Runs `python -m modelcrew_assets.worker ...` on this machine; Pipes over temp files."""

    backend_name: ClassVar[str] = "local"

    python: str = Field(default=sys.executable, description="Interpreter with modelcrew and kohya's deps")
    trainer_launch: str | None = Field(
        default=None, description="Command up to sdxl_train_network.py (MODELCREW_TRAINER_LAUNCH)"
    )
    gpu_type: str = "local"
    poll_seconds: float = 0.5
    pipes_poll_seconds: float = 0.2
    closing_grace_seconds: float = 5  # temp-file messages are there as soon as the process wrote them

    def _pipes(self, context, storage: StorageResource, extras, budget_s):
        return dg.PipesTempFileContextInjector(), dg.PipesTempFileMessageReader(), {}

    def _launch(self, context, worker_args, env) -> LocalProcess:
        extra = {"MODELCREW_TRAINER_LAUNCH": self.trainer_launch} if self.trainer_launch else {}
        token = uuid.uuid4().hex
        process = subprocess.Popen(
            [self.python, "-m", "modelcrew_assets.worker", *worker_args],
            env={**os.environ, **env, **extra, TREE_TOKEN_ENV: token},
            start_new_session=True,
        )
        context.log.info(f"local worker started (pid {process.pid}): worker {' '.join(worker_args)}")
        return LocalProcess(process, self.gpu_type, token)
