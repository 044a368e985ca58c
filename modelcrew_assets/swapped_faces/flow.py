"""The swap flow: every target at once, at most `max_jobs` paid jobs running, every job id in the ledger
before anything else happens to it.

Per target, resuming from its ledger record: done -> reuse (no call); no face -> skip (no call);
no boxes -> detect; no live swap job -> create one (ledger first); poll; optional enhance (same rule);
store. Rule for an ambiguous create (the answer never came): record it, list the target as
needs-attention and do not create again, neither now nor in a rerun, unless the run is told
`resubmit_ambiguous` (an operator who checked the provider's dashboard, or accepts one possible extra job).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from PIL import Image

from modelcrew_assets.imaging import ImageInputError, decode_image
from modelcrew_assets.object_store import Storage
from modelcrew_assets.swapped_faces.inputs import SwapInput, SwapInputs, SwapOptions, SwapTarget
from modelcrew_assets.swapped_faces.ledger import LedgerRecord, LedgerStore, Step
from modelcrew_assets.swapped_faces.providers import (
    AmbiguousCreateError,
    ResultGoneError,
    SwapJobFailedError,
    SwapProvider,
    SwapProviderError,
)
from modelcrew_assets.swapped_faces.results import TargetOutcome, store_result

T = TypeVar("T")


class Interrupted(Exception):
    """Another target hit an unexpected error: stop before creating or polling anything more."""


@dataclass(frozen=True)
class SwapRun:
    model: str
    inputs: SwapInputs
    options: SwapOptions
    max_jobs: int
    resubmit_ambiguous: bool = False


async def swap_all(run: SwapRun, provider: SwapProvider, storage: Storage) -> list[TargetOutcome]:
    """Swap every target. Expected failures become outcomes; an unexpected error stops new work, lets
    the in-flight creates reach the ledger, then propagates (a rerun resumes from the ledger)."""
    ledger = LedgerStore(storage, run.model)
    slots = asyncio.Semaphore(run.max_jobs)
    # Detections are throttled to half the request budget, so a queue of them never delays the
    # creates and polls of jobs that are running (and billed).
    detecting = asyncio.Semaphore(max(1, run.max_jobs // 2))
    stop = asyncio.Event()

    async def one(target: SwapTarget) -> TargetOutcome:
        try:
            return await _TargetSwap(run, target, provider, storage, ledger, slots, detecting, stop).run()
        except Exception:
            stop.set()
            raise

    results = await asyncio.gather(*(one(target) for target in run.inputs.targets), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException) and not isinstance(r, Interrupted)]
    if errors:
        raise errors[0]
    return [r for r in results if isinstance(r, TargetOutcome)]


class _TargetSwap:
    def __init__(self, run, target, provider, storage, ledger, slots, detecting, stop):
        self.run_spec: SwapRun = run
        self.target: SwapTarget = target
        self.source: SwapInput = target.source
        self.face: SwapInput = run.inputs.face
        self.provider: SwapProvider = provider
        self.storage: Storage = storage
        self.ledger: LedgerStore = ledger
        self.slots: asyncio.Semaphore = slots
        self.detecting: asyncio.Semaphore = detecting
        self.stop: asyncio.Event = stop
        self.created: list[str] = []
        self.timings: dict[str, float] = {}

    async def run(self) -> TargetOutcome:
        record = await asyncio.to_thread(self.ledger.load, self.target.cache_key) or self._new_record()
        if (
            record.outcome == "done"
            and record.result
            and await asyncio.to_thread(self.storage.exists, record.result.key)
        ):
            return self._outcome("cached", record)
        if record.outcome == "no_face":
            return self._outcome("no_face", record)
        if record.open_ambiguity and not self.run_spec.resubmit_ambiguous:
            return self._outcome("needs_attention", record)
        boxes = record.boxes()
        if boxes is None:
            try:
                async with self.detecting:
                    boxes = await self._timed("detect", self.provider.detect(self.source))
            except SwapProviderError as error:
                return await self._finish(record.update(outcome="failed", reason=f"face detection: {error}"))
            # Not saved on its own: detection bills no job, so the next ledger write carries the boxes.
            record = record.update(face_boxes=tuple(b.as_tuple() for b in boxes))
        if not boxes:
            return await self._finish(record.update(outcome="no_face", reason="no face detected"))
        chosen = boxes[:1] if self.run_spec.options.faces == "largest" else boxes
        record, swapped = await self._job(
            record,
            "swap",
            lambda: self.provider.create_swap(self.source, self.face, chosen),
            lambda job_id: self.provider.finish_swap(job_id, self.source, self.face, chosen),
        )
        if swapped and self.run_spec.options.enhance:
            swapped_bytes = swapped[0]
            record, swapped = await self._job(
                record,
                "enhance",
                lambda: self.provider.create_enhance(swapped_bytes),
                lambda job_id: self.provider.finish_enhance(job_id, swapped_bytes),
            )
        if swapped is None:
            return await self._finish(record)
        result = await asyncio.to_thread(
            store_result,
            self.storage,
            record,
            self.source,
            self.face,
            swapped[1],
            chosen,
            self.timings,
            self.provider.simulated,
        )
        return await self._finish(record.update(outcome="done", reason=None, result=result))

    async def _job(
        self,
        record: LedgerRecord,
        step: Step,
        create: Callable[[], Awaitable[str]],
        finish: Callable[[str], Awaitable[bytes]],
    ) -> tuple[LedgerRecord, tuple[bytes, Image.Image] | None]:
        """Create (or resume) one paid job and wait for its image; (record, None) when it did not work."""
        async with self.slots:
            job = record.live_job(step)
            polling = None
            if job is None:
                if self.stop.is_set():
                    raise Interrupted
                try:
                    job_id = await self._timed(f"{step}_create", create())
                except AmbiguousCreateError as error:
                    return await self._save(record.with_ambiguity(step, f"{step}: {error}")), None
                except SwapProviderError as error:
                    return record.update(outcome="failed", reason=f"{step}: {error}"), None
                self.created.append(job_id)
                # The first poll waits about a job's length anyway: write the ledger during that wait.
                polling = asyncio.ensure_future(self._unless_stopped(finish(job_id)))
                try:
                    record = await self._save(record.with_job(step, job_id))
                except BaseException:
                    polling.cancel()
                    raise
            job_id = record.live_job(step).job_id
            try:
                data = await self._timed(f"{step}_job", polling or self._unless_stopped(finish(job_id)))
            except SwapJobFailedError as error:
                return self._failed_job(record, step, job_id, str(error)), None
            except ResultGoneError as error:
                return self._failed_job(record, step, job_id, f"result is gone: {error}"), None
            except SwapProviderError as error:
                return record.update(outcome="failed", reason=f"{step} job {job_id}: {error}"), None
        # The job is finished: its slot is free before the result is decoded and recorded.
        try:
            image = await asyncio.to_thread(decode_image, data, f"{self.provider.name} {step} job {job_id} result")
        except ImageInputError as error:
            return self._failed_job(record, step, job_id, f"unusable result: {error}"), None
        # Saved with the final outcome: until then a rerun just polls the job again, which is free.
        return record.with_job_status(step, job_id, "completed"), (data, image)

    def _failed_job(self, record: LedgerRecord, step: Step, job_id: str, reason: str) -> LedgerRecord:
        return record.with_job_status(step, job_id, "failed", reason).update(outcome="failed", reason=reason)

    async def _unless_stopped(self, work: Awaitable[T]) -> T:
        """Polling is free to abandon (the job id is in the ledger); creating is not, so only polls race."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()
            raise Interrupted
        stopped.cancel()
        return task.result()

    async def _timed(self, name: str, work: Awaitable[T]) -> T:
        started = time.monotonic()
        try:
            return await work
        finally:
            self.timings[name] = time.monotonic() - started

    async def _save(self, record: LedgerRecord) -> LedgerRecord:
        return await asyncio.to_thread(self.ledger.save, record)

    async def _finish(self, record: LedgerRecord) -> TargetOutcome:
        record = await self._save(record)
        status = {"done": "swapped", "pending": "failed"}.get(record.outcome, record.outcome)
        return self._outcome(status, record)

    def _outcome(self, status: str, record: LedgerRecord) -> TargetOutcome:
        return TargetOutcome(
            target_key=self.source.key,
            status=status,
            reason=record.reason,
            result=record.result if status in ("swapped", "cached") else None,
            jobs_created=len(self.created),
            job_ids=tuple(record.job_ids),
            duplicates=self.target.duplicates,
        )

    def _new_record(self) -> LedgerRecord:
        return LedgerRecord(
            cache_key=self.target.cache_key,
            model=self.run_spec.model,
            target_key=self.source.key,
            target_sha256=self.source.sha256,
            face_key=self.face.key,
            face_sha256=self.face.sha256,
            options=self.run_spec.options,
        )
