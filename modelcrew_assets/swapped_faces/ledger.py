"""The swap ledger: one JSON record per target (by cache key) in storage, written the moment a paid job
exists, so a retried or restarted run polls that job instead of paying for a new one.

`models/<m>/swapped_faces/ledger/<cache_key>.json`. A record is only ever replaced by a newer version of
itself; job entries are appended, never removed, so the ledger is also the bill.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from modelcrew_assets.face_detection import FaceBox
from modelcrew_assets.handoffs import SwappedFace
from modelcrew_assets.object_store import Storage
from modelcrew_assets.storage_keys import asset_prefix
from modelcrew_assets.swapped_faces.inputs import ASSET, SwapOptions

Outcome = Literal["pending", "done", "no_face", "failed", "needs_attention"]
Step = Literal["swap", "enhance"]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class JobEntry(_Frozen):
    job_id: str
    status: Literal["pending", "completed", "failed"] = "pending"
    reason: str | None = None
    created_at: str


class AmbiguousAttempt(_Frozen):
    """A create POST whose answer never came: the provider may or may not have made (and billed) a job."""

    step: Step
    at: str
    message: str


class LedgerRecord(_Frozen):
    cache_key: str
    model: str
    target_key: str
    target_sha256: str
    face_key: str
    face_sha256: str
    options: SwapOptions
    outcome: Outcome = "pending"
    reason: str | None = None
    face_boxes: tuple[tuple[int, int, int, int], ...] | None = None
    swap_jobs: tuple[JobEntry, ...] = ()
    enhance_jobs: tuple[JobEntry, ...] = ()
    ambiguous: tuple[AmbiguousAttempt, ...] = ()
    open_ambiguity: Step | None = None
    result: SwappedFace | None = None
    updated_at: str = ""

    def boxes(self) -> list[FaceBox] | None:
        return None if self.face_boxes is None else [FaceBox(*box) for box in self.face_boxes]

    def live_job(self, step: Step) -> JobEntry | None:
        """The job to poll for a step: the last one unless it failed (then a new one is due)."""
        jobs = self.swap_jobs if step == "swap" else self.enhance_jobs
        return jobs[-1] if jobs and jobs[-1].status != "failed" else None

    def with_job(self, step: Step, job_id: str) -> LedgerRecord:
        entry = JobEntry(job_id=job_id, created_at=now())
        field = "swap_jobs" if step == "swap" else "enhance_jobs"
        return self.update(**{field: (*getattr(self, field), entry)}, open_ambiguity=None, outcome="pending")

    def with_job_status(self, step: Step, job_id: str, status: str, reason: str | None = None) -> LedgerRecord:
        field = "swap_jobs" if step == "swap" else "enhance_jobs"
        jobs = tuple(
            job.model_copy(update={"status": status, "reason": reason}) if job.job_id == job_id else job
            for job in getattr(self, field)
        )
        return self.update(**{field: jobs})

    def with_ambiguity(self, step: Step, message: str) -> LedgerRecord:
        attempt = AmbiguousAttempt(step=step, at=now(), message=message)
        return self.update(
            ambiguous=(*self.ambiguous, attempt), open_ambiguity=step, outcome="needs_attention", reason=message
        )

    def update(self, **changes: object) -> LedgerRecord:
        return self.model_copy(update={**changes, "updated_at": now()})

    @property
    def job_ids(self) -> list[str]:
        return [job.job_id for job in (*self.swap_jobs, *self.enhance_jobs)]


class LedgerStore:
    def __init__(self, storage: Storage, model: str):
        self.storage = storage
        self.prefix = asset_prefix(model, ASSET) + "ledger/"

    def key(self, cache_key: str) -> str:
        return f"{self.prefix}{cache_key}.json"

    def load(self, cache_key: str) -> LedgerRecord | None:
        try:
            raw = self.storage.get_bytes(self.key(cache_key))
        except KeyError:
            return None
        return LedgerRecord.model_validate_json(raw)

    def save(self, record: LedgerRecord) -> LedgerRecord:
        self.storage.put_bytes(
            self.key(record.cache_key), record.model_dump_json(indent=2).encode(), "application/json"
        )
        return record
