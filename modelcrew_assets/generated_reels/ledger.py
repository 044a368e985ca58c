"""The reel ledger: one JSON record per reel key (still, motion, provider, model, duration) in storage,
written the moment a paid job id exists, so a retried or restarted run polls that job instead of paying
for another (the swap ledger's rule). Jobs are appended, never removed: the ledger is also the bill the
budget reads.

`models/<m>/generated_reels/ledger/<reel key>.json`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from modelcrew_assets.asset_names import GENERATED_REELS as ASSET
from modelcrew_assets.object_store import Storage
from modelcrew_assets.storage_keys import asset_prefix

# pending: a job runs (or none yet); done: the provider's MP4 is stored; refused: moderation said no (a new
# job would be refused too); failed: the last job failed, a rerun makes one new job; needs_attention: an
# ambiguous create, see DESIGN.
Outcome = Literal["pending", "done", "refused", "failed", "needs_attention"]


def now() -> datetime:
    return datetime.now(UTC)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class VideoJob(_Frozen):
    job_id: str
    created_at: datetime
    cost_usd: float  # duration x the provider's price when it was created
    status: Literal["pending", "succeeded", "failed"] = "pending"
    failure_code: str = ""
    refunded: bool = False  # a failed job the provider does not bill

    @property
    def charged_usd(self) -> float:
        return 0.0 if self.refunded else self.cost_usd


class ReelRecord(_Frozen):
    key: str
    model: str
    batch_id: str
    still_key: str  # the generated image the reel animates
    still_sha256: str
    prompt_still_key: str  # the 9:16 JPEG sent to the provider
    identity: float  # the still's identity score when it was chosen
    still_prompt: str
    motion: str
    prompt: str  # what the video model is asked
    seed: int
    provider: str
    provider_model: str
    duration: int
    dry_run: bool = False
    outcome: Outcome = "pending"
    reason: str = ""
    jobs: tuple[VideoJob, ...] = ()
    ambiguous_at: tuple[datetime, ...] = ()
    open_ambiguity: bool = False
    raw_key: str = ""  # the provider's MP4, copied the moment it was finished
    updated_at: datetime

    def live_job(self) -> VideoJob | None:
        """The job to poll: the last one unless it failed (then a new one is due, if allowed)."""
        return self.jobs[-1] if self.jobs and self.jobs[-1].status != "failed" else None

    def with_job(self, job_id: str, cost_usd: float) -> ReelRecord:
        job = VideoJob(job_id=job_id, created_at=now(), cost_usd=cost_usd)
        return self.update(jobs=(*self.jobs, job), open_ambiguity=False, outcome="pending", reason="")

    def with_job_result(self, job_id: str, **changes: object) -> ReelRecord:
        jobs = tuple(job.model_copy(update=changes) if job.job_id == job_id else job for job in self.jobs)
        return self.update(jobs=jobs)

    def with_ambiguity(self, message: str, cost_usd: float) -> ReelRecord:
        # Counted in the budget as if billed: the provider may have made the job.
        attempt = VideoJob(job_id="(ambiguous)", created_at=now(), cost_usd=cost_usd, status="failed")
        return self.update(
            jobs=(*self.jobs, attempt),
            ambiguous_at=(*self.ambiguous_at, attempt.created_at),
            open_ambiguity=True,
            outcome="needs_attention",
            reason=message,
        )

    def update(self, **changes: object) -> ReelRecord:
        return self.model_copy(update={**changes, "updated_at": now()})

    @property
    def job_ids(self) -> list[str]:
        return [job.job_id for job in self.jobs if job.job_id != "(ambiguous)"]


class ReelLedger:
    def __init__(self, storage: Storage, model: str):
        self.storage = storage
        self.prefix = asset_prefix(model, ASSET) + "ledger/"

    def key(self, reel_key: str) -> str:
        return f"{self.prefix}{reel_key}.json"

    def load(self, reel_key: str) -> ReelRecord | None:
        try:
            return ReelRecord.model_validate_json(self.storage.get_bytes(self.key(reel_key)))
        except KeyError:
            return None

    def save(self, record: ReelRecord) -> ReelRecord:
        self.storage.put_bytes(self.key(record.key), record.model_dump_json(indent=2).encode(), "application/json")
        return record

    def all(self) -> list[ReelRecord]:
        return [
            ReelRecord.model_validate_json(self.storage.get_bytes(item.key))
            for item in self.storage.list(self.prefix)
            if item.key.endswith(".json")
        ]
