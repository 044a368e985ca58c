"""The GPU executor interface: run `python -m modelcrew_assets.worker <args>` somewhere with a GPU, under
Dagster Pipes, and always give the machine back.

`GpuExecutorResource.run(context, worker_args=[...], extras={...}, storage=...)` returns a `WorkerRun`
with what the worker reported (Pipes materialization/check results and custom messages) and what the
machine cost. The machine is given back on every ending: success, failure, time budget exceeded, a worker
gone quiet (no Pipes message or heartbeat for `silence_timeout_seconds`), and a cancelled run (Ctrl-C,
SIGTERM and the UI's terminate all reach the step as SIGINT, which Dagster raises as
DagsterExecutionInterruptedError). Giving it back runs with Dagster's interrupts held off, so a second
SIGINT (the multiprocess executor forwards one to the step) cannot cut the terminate call in half, and
it is retried until `terminate_timeout_seconds`. A run whose process was killed outright leaves its pod
to the pod sweeper (gpu_sweeper/), which reads the liveness tag refreshed here.
"""

from __future__ import annotations

import abc
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import dagster as dg
from dagster._utils.interrupts import capture_interrupts, pop_captured_interrupt
from pydantic import Field

from modelcrew_assets.resources.service import ServiceResource
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.worker.generators import DIFFUSERS
from modelcrew_assets.worker.heartbeat import HEARTBEAT_ENV
from modelcrew_assets.worker.messages import Heartbeat, Result, WorkerMessage, parse_message

# Unix time the step last saw its GPU worker alive; the pod sweeper ends pods of runs where it is stale.
GPU_ALIVE_TAG = "modelcrew/gpu_alive_at"

Message = TypeVar("Message", bound=WorkerMessage)
ResultType = TypeVar("ResultType", bound=Result)


class WorkerFailedError(RuntimeError):
    """The worker failed or was stopped; `run` holds what it reported before that."""

    def __init__(self, message: str, run: WorkerRun):
        super().__init__(message)
        self.run = run


class GpuBudgetExceededError(WorkerFailedError):
    """The worker ran past max_runtime_minutes; the machine was terminated."""


class WorkerSilentError(WorkerFailedError):
    """The worker never sent a Pipes message within startup_timeout_seconds; the machine was terminated."""


class WorkerLostError(WorkerFailedError):
    """The machine went away before the worker could say how it ended (a pod reclaimed, a process
    killed): infrastructure, not our code, so the step is retried; every command resumes from storage."""


@dataclass(frozen=True)
class WorkerRun:
    backend: str  # "runpod_pod" | "local"
    job_id: str  # pod id, or pid for local
    gpu_type: str
    billable_seconds: float
    cost_usd: float  # billable seconds x the machine's own price (RunPod bills pods by the second)
    results: tuple[Any, ...] = ()  # PipesExecutionResult: MaterializeResult / AssetCheckResult
    messages: tuple[WorkerMessage, ...] = ()  # the worker's custom messages, parsed, in order
    extra: Mapping[str, Any] = field(default_factory=dict)

    def of_type(self, kind: type[Message]) -> list[Message]:
        return [m for m in self.messages if isinstance(m, kind)]

    def cost_metadata(self) -> dict[str, Any]:
        """What a person needs to see what this GPU work cost and where it ran."""
        return {
            "backend": self.backend,
            "gpu_job_id": self.job_id,  # RunPod pod id, or the local process id
            "gpu_type": self.gpu_type,
            "billable_seconds": self.billable_seconds,
            "cost_usd": self.cost_usd,
        }

    @property
    def result(self) -> Result | None:
        """The worker's closing `result` message, if it got that far."""
        found = self.of_type(Result)
        return found[-1] if found else None

    def result_as(self, kind: type[ResultType]) -> ResultType | None:
        """The closing message as the command's own result model; None without one of that command."""
        result = self.result
        return result if isinstance(result, kind) else None


class WorkerHandle(abc.ABC):
    """One launched worker (a pod, a process)."""

    job_id: str
    gpu_type: str
    cost_per_hour: float

    @abc.abstractmethod
    def exited(self) -> str | None:
        """None while running; otherwise a short description of how it ended."""

    @abc.abstractmethod
    def terminate(self, timeout_s: float | None = None) -> None:
        """End the machine for good, within `timeout_s`; safe to call twice."""


@contextmanager
def interrupts_held(reraise: bool) -> Iterator[None]:
    """Dagster's SIGINT (and SIGTERM) is captured while the block runs. With `reraise`, one that came
    is raised after the block as DagsterExecutionInterruptedError; otherwise (cleanup after an error,
    which is already propagating) it has done its job."""
    with capture_interrupts():
        try:
            yield
        finally:
            interrupted = pop_captured_interrupt()
    if interrupted and reraise:
        raise dg.DagsterExecutionInterruptedError()


class Liveness:
    """When the worker last said anything: custom messages (heartbeats included) and reported results."""

    def __init__(self, handler: dg.PipesMessageHandler, now: float):
        self.handler = handler
        self.count = 0
        self.heard = False
        self.last = now

    def silent_for(self, now: float) -> float:
        count = len(self.handler.get_custom_messages()) + len(self.handler.get_reported_results())
        if count != self.count or (self.handler.received_opened_message and not self.heard):
            self.count, self.heard, self.last = count, True, now
        return now - self.last


class GpuExecutorResource(ServiceResource):
    """Where GPU work runs. Subclasses: RunPodPodsResource, LocalGpuResource, SimulatedGpuResource."""

    max_runtime_minutes: float = Field(default=180, gt=0, description="Budget per run; then terminated")
    dollars_per_hour: float = Field(
        default=0.0, ge=0, description="GPU price for estimates before a machine exists (after: its own price)"
    )
    poll_seconds: float = Field(default=10, gt=0, description="How often the machine's state is polled")
    pipes_poll_seconds: float = Field(default=5, gt=0, description="How often Pipes messages are read")
    closing_grace_seconds: float = Field(
        default=120, ge=0, description="After the machine ends, how long to wait for its last messages"
    )
    lost_worker_retries: int = Field(default=2, ge=0, description="Step retries when the machine is lost")
    lost_worker_retry_seconds: float = Field(default=30, ge=0, description="Wait before such a retry")
    heartbeat_seconds: float = Field(default=30, gt=0, description="How often the worker sends a heartbeat")
    silence_timeout_seconds: float = Field(
        default=240, gt=0, description="A worker silent this long (no message, no heartbeat) is lost: terminated"
    )
    startup_timeout_seconds: float = Field(
        default=900, gt=0, description="How long the worker may take to send its first message (image pull, boot)"
    )
    terminate_timeout_seconds: float = Field(
        default=90, gt=0, description="How long giving the machine back may take, retries included"
    )
    liveness_tag_seconds: float = Field(
        default=30, gt=0, description=f"How often the run's {GPU_ALIVE_TAG} tag is refreshed for the pod sweeper"
    )

    backend_name: ClassVar[str] = "gpu"
    # The label on what this executor's machine makes: False, it runs the real trainer and generator.

    def _software_extras(self, context: dg.AssetExecutionContext, storage: StorageResource) -> dict[str, Any]:
        """What the worker is told about the software it runs, beside the stage's extras; the stage never
        names a generator (a stand-in executor, stand_in.py, names its own and finds the stand-in's inputs)."""
        return {"generator": DIFFUSERS}

    @abc.abstractmethod
    def _pipes(
        self, context: dg.AssetExecutionContext, storage: StorageResource, extras: Mapping[str, Any], budget_s: float
    ) -> tuple[dg.PipesContextInjector, dg.PipesMessageReader, dict]:
        """The context injector, message reader and extra worker env for this backend (credentials that
        must last `budget_s` and reach what `extras` names)."""

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
        extras = {**self._software_extras(context, storage), **extras}  # what the caller names wins
        injector, reader, transport_env = self._pipes(context, storage, extras, budget_s)
        state: dict[str, Any] = {"handle": None, "started": None, "ended": None}
        error: BaseException | None = None
        with dg.open_pipes_session(context, injector, reader, extras=dict(extras)) as session:
            try:
                env = {
                    **session.get_bootstrap_env_vars(),
                    **transport_env,
                    HEARTBEAT_ENV: f"{self.heartbeat_seconds:g}",
                }
                with self._terminating(context, state):
                    # Before the machine exists: the run may carry an old tag (an earlier GPU step, or its
                    # parent run: run retries copy tags) that would let the sweeper end the new machine.
                    self._mark_alive(context)
                    with interrupts_held(reraise=True):  # a pod that exists is always recorded
                        state["handle"] = self._launch(context, worker_args, env)
                        state["started"] = time.monotonic()
                    outcome = self._wait(context, state["handle"], session, budget_s)
                self._await_last_messages(session)
            except BaseException as raised:  # re-raised below with what the worker reported
                error = raised
        run = self._summarize(state, session)
        if isinstance(error, WorkerFailedError):
            raise type(error)(str(error), run) from None
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
        if not result.ok:
            reason = result.error or "the worker reported a failure without a reason"
            tail = "\n".join(result.log_tail)
            raise WorkerFailedError(f"{self.backend_name} job {run.job_id}: {reason}\n{tail}".rstrip(), run)
        return run

    @contextmanager
    def _terminating(self, context: dg.AssetExecutionContext, state: dict) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self._give_back(context, state, reraise_interrupt=False)
            raise
        self._give_back(context, state, reraise_interrupt=True)

    def _give_back(self, context: dg.AssetExecutionContext, state: dict, reraise_interrupt: bool) -> None:
        handle: WorkerHandle | None = state["handle"]
        if handle is None:
            return
        with interrupts_held(reraise=reraise_interrupt):
            deadline = time.monotonic() + self.terminate_timeout_seconds
            pause = 1.0
            while True:
                try:
                    handle.terminate(timeout_s=max(1.0, deadline - time.monotonic()))
                    break
                except Exception as error:
                    if time.monotonic() + pause >= deadline:
                        raise
                    context.log.warning(f"{self.backend_name} {handle.job_id}: terminate failed, retrying: {error}")
                    time.sleep(pause)
                    pause = min(pause * 2, 10)
            state["ended"] = time.monotonic()
            # Inside the hold: the executor forwards a Ctrl-C to the step that already had the terminal's,
            # and that second one must not cut this record short.
            context.log.info(f"{self.backend_name} {handle.job_id} terminated")

    def _wait(self, context, handle: WorkerHandle, session: dg.PipesSession, budget_s: float) -> str:
        started = time.monotonic()
        deadline = started + budget_s
        liveness = Liveness(session.message_handler, started)
        tagged = 0.0
        while True:
            if session.message_handler.received_closed_message:
                return "pipes closed"
            ended = handle.exited()
            if ended is not None:
                return ended
            now = time.monotonic()
            if now > deadline:
                raise GpuBudgetExceededError(
                    f"{self.backend_name} {handle.job_id} ran past the budget of {budget_s / 60:g} minutes "
                    "(max_runtime_minutes) and was terminated; raise max_runtime_minutes or lower "
                    "max_train_steps",
                    WorkerRun(self.backend_name, handle.job_id, handle.gpu_type, 0, 0),
                )
            silent = liveness.silent_for(now)
            if not liveness.heard and silent > self.startup_timeout_seconds:
                raise WorkerSilentError(
                    f"{self.backend_name} {handle.job_id} sent no Pipes message within {silent:.0f} s of its "
                    "start (startup_timeout_seconds) and was terminated: check that the worker image starts "
                    "(image name, registry access, `python -m modelcrew_assets.worker` in it)",
                    WorkerRun(self.backend_name, handle.job_id, handle.gpu_type, 0, 0),
                )
            if liveness.heard and silent > self.silence_timeout_seconds:
                return f"no Pipes message or heartbeat for {silent:.0f} s (silence_timeout_seconds)"
            if now - tagged >= self.liveness_tag_seconds:
                tagged = now
                self._mark_alive(context)
            time.sleep(self.poll_seconds)

    def _mark_alive(self, context: dg.AssetExecutionContext) -> None:
        try:
            context.instance.add_run_tags(context.run.run_id, {GPU_ALIVE_TAG: f"{time.time():.0f}"})
        except Exception:  # a busy instance must not end the GPU work; the sweeper waits longer then
            context.log.warning(f"could not refresh {GPU_ALIVE_TAG}:\n{traceback.format_exc(limit=2)}")

    def _await_last_messages(self, session: dg.PipesSession) -> None:
        """The machine is gone; blob-store readers may still be fetching its last message chunks."""
        grace = time.monotonic() + self.closing_grace_seconds
        while not session.message_handler.received_closed_message and time.monotonic() < grace:
            time.sleep(0.2)

    def _summarize(self, state: dict, session: dg.PipesSession) -> WorkerRun:
        handle: WorkerHandle | None = state["handle"]
        if handle is None:
            return WorkerRun(self.backend_name, "", "", 0.0, 0.0)
        seconds = (state["ended"] or time.monotonic()) - (state["started"] or time.monotonic())
        return WorkerRun(
            backend=self.backend_name,
            job_id=handle.job_id,
            gpu_type=handle.gpu_type,
            billable_seconds=round(seconds, 1),
            cost_usd=round(seconds * handle.cost_per_hour / 3600, 4),
            results=tuple(session.get_reported_results()),
            messages=tuple(
                m for m in map(parse_message, session.get_custom_messages()) if not isinstance(m, Heartbeat)
            ),
        )


def forwarded_env(names: Sequence[str], environ: Mapping[str, str]) -> dict[str, str]:
    return {name: environ[name] for name in names if environ.get(name)}
