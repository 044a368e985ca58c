"""The worker as a local process: a studio's own GPU box, and dry-run (with the stand-in trainer)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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

    def terminate(self) -> None:
        if self.process.poll() is not None:
            return
        # The worker and its trainer share a process group: end both.
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


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

    def _pipes(self, storage: StorageResource):
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
