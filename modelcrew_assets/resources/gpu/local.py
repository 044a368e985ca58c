"""The worker as a local process: a studio's own GPU box, and dry-run (with the stand-in trainer)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import dagster as dg
from pydantic import Field

from modelcrew_assets.resources.gpu.executor import GpuExecutorResource, WorkerHandle
from modelcrew_assets.resources.storage import StorageResource

STAND_IN_LAUNCH = f"{sys.executable} -m modelcrew_assets.worker.stand_in_trainer"


class LocalProcess(WorkerHandle):
    def __init__(self, process: subprocess.Popen, gpu_type: str):
        self.process = process
        self.job_id = f"pid-{process.pid}"
        self.gpu_type = gpu_type
        self.cost_per_hour = 0.0

    def exited(self) -> str | None:
        code = self.process.poll()
        return None if code is None else f"process exited with code {code}"

    def terminate(self, timeout_s: float | None = None) -> None:
        """SIGTERM to the worker's process group (the worker then kills its trainer, which runs in a
        session of its own), SIGKILL after a grace period, then any descendant still alive."""
        if self.process.poll() is not None:
            return
        descendants = _descendants(self.process.pid)
        _signal_group(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=min(10, timeout_s or 10))
        except subprocess.TimeoutExpired:
            _signal_group(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for pid in descendants:  # a trainer whose worker died before it could end it
            _signal_group(pid, signal.SIGKILL)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    for send in (os.killpg, os.kill):
        try:
            send(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc (Linux); elsewhere the process group has to do."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


class LocalGpuResource(GpuExecutorResource):
    """Runs `python -m modelcrew_assets.worker ...` on this machine; Pipes over temp files."""

    backend_name: ClassVar[str] = "local"

    python: str = Field(default=sys.executable, description="Interpreter with modelcrew and kohya's deps")
    trainer_launch: str | None = Field(
        default=None, description="Command up to sdxl_train_network.py; the stand-in when dry_run"
    )
    gpu_type: str = "local"
    poll_seconds: float = 0.5
    pipes_poll_seconds: float = 0.2
    closing_grace_seconds: float = 5  # temp-file messages are there as soon as the process wrote them

    def _pipes(self, context, storage: StorageResource, extras, budget_s):
        return dg.PipesTempFileContextInjector(), dg.PipesTempFileMessageReader(), {}

    def _launch(self, context, worker_args, env) -> LocalProcess:
        launch = STAND_IN_LAUNCH if self.dry_run else self.trainer_launch
        extra = {"MODELCREW_TRAINER_LAUNCH": launch} if launch else {}
        process = subprocess.Popen(
            [self.python, "-m", "modelcrew_assets.worker", *worker_args],
            env={**os.environ, **env, **extra},
            start_new_session=True,
        )
        context.log.info(f"local worker started (pid {process.pid}): worker {' '.join(worker_args)}")
        return LocalProcess(process, self.gpu_type)
