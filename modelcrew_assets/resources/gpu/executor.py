"""The GPU executor interface: run `python -m modelcrew_assets.worker <args>` somewhere with a GPU, under
Dagster Pipes, and always give the machine back.

`GpuExecutorResource.run(context, worker_args=[...], extras={...}, storage=...)` returns a `WorkerRun`
with what the worker reported (Pipes materialization/check results and custom messages) and what the
machine cost. Every backend ends the machine in a `finally`: success, failure, time budget exceeded, and
a run cancelled from the UI (Dagster raises DagsterExecutionInterruptedError / KeyboardInterrupt in the
op, which passes through the same `finally`).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import dagster as dg
from dagster._core.pipes.context import PipesSession
from pydantic import Field

from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.worker.messages import RESULT


class WorkerFailedError(RuntimeError):
    """The worker failed or was stopped; `run` holds what it reported before that."""

    def __init__(self, message: str, run: WorkerRun):
        super().__init__(message)
        self.run = run


class GpuBudgetExceededError(WorkerFailedError):
    """The worker ran past max_runtime_minutes; the machine was terminated."""


class WorkerLostError(WorkerFailedError):
    """The machine went away before the worker could say how it ended (a pod reclaimed, a process
    killed): infrastructure, not our code, so the step is retried; every command resumes from storage."""


@dataclass(frozen=True)
class WorkerRun:
    backend: str  # "runpod_pod" | "local"
    job_id: str  # pod id, or pid for local
    gpu_type: str
    billable_seconds: float
    estimated_cost_usd: float
    results: tuple[Any, ...] = ()  # PipesExecutionResult: MaterializeResult / AssetCheckResult
    messages: tuple[Mapping[str, Any], ...] = ()  # the worker's custom messages, in order
    extra: Mapping[str, Any] = field(default_factory=dict)

    def of_type(self, kind: str) -> list[Mapping[str, Any]]:
        return [m for m in self.messages if isinstance(m, Mapping) and m.get("type") == kind]

    def cost_metadata(self) -> dict[str, Any]:
        """What a person needs to see what this GPU work cost and where it ran."""
        return {
            "backend": self.backend,
            "gpu_job_id": self.job_id,  # RunPod pod id, or the local process id
            "gpu_type": self.gpu_type,
            "billable_seconds": self.billable_seconds,
            "estimated_cost_usd": self.estimated_cost_usd,
        }

    @property
    def result(self) -> Mapping[str, Any] | None:
        """The worker's closing `result` message, if it got that far."""
        found = self.of_type(RESULT)
        return found[-1] if found else None


class WorkerHandle(abc.ABC):
    """One launched worker (a pod, a process)."""

    job_id: str
    gpu_type: str
    cost_per_hour: float

    @abc.abstractmethod
    def exited(self) -> str | None:
        """None while running; otherwise a short description of how it ended."""

    @abc.abstractmethod
    def terminate(self) -> None:
        """End the machine for good; safe to call twice."""


class GpuExecutorResource(dg.ConfigurableResource, abc.ABC):
    """Where GPU work runs. Subclasses: RunPodPodsResource, LocalGpuResource."""

    max_runtime_minutes: float = Field(default=180, gt=0, description="Budget per run; then terminated")
    poll_seconds: float = Field(default=10, gt=0, description="How often the machine's state is polled")
    pipes_poll_seconds: float = Field(default=5, gt=0, description="How often Pipes messages are read")
    closing_grace_seconds: float = Field(
        default=120, ge=0, description="After the machine ends, how long to wait for its last messages"
    )
    dry_run: bool = Field(default=False, description="Run a stand-in trainer instead of kohya")
    lost_worker_retries: int = Field(default=2, ge=0, description="Step retries when the machine is lost")
    lost_worker_retry_seconds: float = Field(default=30, ge=0, description="Wait before such a retry")

    backend_name: ClassVar[str] = "gpu"

    @abc.abstractmethod
    def _pipes(self, storage: StorageResource) -> tuple[dg.PipesContextInjector, dg.PipesMessageReader, dict]:
        """The context injector, message reader and extra worker env for this backend."""

    @abc.abstractmethod
    def _launch(self, context: dg.AssetExecutionContext, worker_args: list[str], env: dict[str, str]) -> WorkerHandle:
        """Start the worker; raise when no machine can be had."""

    def run(
        self,
        context: dg.AssetExecutionContext,
        *,
        worker_args: list[str],
        extras: Mapping[str, Any],
        storage: StorageResource,
        max_runtime_minutes: float | None = None,
    ) -> WorkerRun:
        budget_s = 60 * (max_runtime_minutes or self.max_runtime_minutes)
        injector, reader, transport_env = self._pipes(storage)
        state: dict[str, Any] = {"handle": None, "started": None, "ended": None}
        error: BaseException | None = None
        with dg.open_pipes_session(context, injector, reader, extras=dict(extras)) as session:
            try:
                env = {**session.get_bootstrap_env_vars(), **transport_env}
                with self._terminating(context, state):
                    state["handle"] = self._launch(context, worker_args, env)
                    state["started"] = time.monotonic()
                    outcome = self._wait(context, state["handle"], session, budget_s)
                self._await_last_messages(session)
            except BaseException as raised:  # re-raised below with what the worker reported
                error = raised
        run = self._summarize(state, session)
        if isinstance(error, GpuBudgetExceededError):
            raise GpuBudgetExceededError(str(error), run) from None
        if error is not None:
            raise error
        result = run.result
        if result is None:
            lost = WorkerLostError(
                f"{self.backend_name} job {run.job_id} ended without reporting a result ({outcome}); "
                f"retrying the step (up to {self.lost_worker_retries} times), resuming from what was stored",
                run,
            )
            context.log.warning(str(lost))
            raise dg.RetryRequested(
                max_retries=self.lost_worker_retries, seconds_to_wait=self.lost_worker_retry_seconds
            ) from lost
        if not result.get("ok"):
            reason = result.get("error") or "the worker reported a failure without a reason"
            tail = "\n".join(result.get("log_tail") or [])
            raise WorkerFailedError(f"{self.backend_name} job {run.job_id}: {reason}\n{tail}".rstrip(), run)
        return run

    @contextmanager
    def _terminating(self, context: dg.AssetExecutionContext, state: dict) -> Iterator[None]:
        try:
            yield
        finally:
            handle = state["handle"]
            if handle is not None:
                handle.terminate()
                state["ended"] = time.monotonic()
                context.log.info(f"{self.backend_name} {handle.job_id} terminated")

    def _wait(self, context, handle: WorkerHandle, session: PipesSession, budget_s: float) -> str:
        deadline = time.monotonic() + budget_s
        while True:
            if session.message_handler.received_closed_message:
                return "pipes closed"
            ended = handle.exited()
            if ended is not None:
                return ended
            if time.monotonic() > deadline:
                raise GpuBudgetExceededError(
                    f"{self.backend_name} {handle.job_id} ran past the budget of {budget_s / 60:g} minutes "
                    "(max_runtime_minutes) and was terminated; raise max_runtime_minutes or lower "
                    "max_train_steps",
                    WorkerRun(self.backend_name, handle.job_id, handle.gpu_type, 0, 0),
                )
            time.sleep(self.poll_seconds)

    def _await_last_messages(self, session: PipesSession) -> None:
        """The machine is gone; blob-store readers may still be fetching its last message chunks."""
        grace = time.monotonic() + self.closing_grace_seconds
        while not session.message_handler.received_closed_message and time.monotonic() < grace:
            time.sleep(0.2)

    def _summarize(self, state: dict, session: PipesSession) -> WorkerRun:
        handle: WorkerHandle | None = state["handle"]
        if handle is None:
            return WorkerRun(self.backend_name, "", "", 0.0, 0.0)
        seconds = (state["ended"] or time.monotonic()) - (state["started"] or time.monotonic())
        return WorkerRun(
            backend=self.backend_name,
            job_id=handle.job_id,
            gpu_type=handle.gpu_type,
            billable_seconds=round(seconds, 1),
            estimated_cost_usd=round(seconds * handle.cost_per_hour / 3600, 4),
            results=tuple(session.get_reported_results()),
            messages=tuple(session.get_custom_messages()),
        )


def forwarded_env(names: Sequence[str], environ: Mapping[str, str]) -> dict[str, str]:
    return {name: environ[name] for name in names if environ.get(name)}
