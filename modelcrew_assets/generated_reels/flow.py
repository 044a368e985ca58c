"""One generated_reels run, provider-neutral: per reel, the ledger says what to do (poll a live job, create
one, or nothing), the provider's MP4 is copied into storage the moment it exists (output URLs expire), then
it is finished (finishing.py) into the reel people post. Every create is recorded in the ledger the moment
its job id exists; an unanswered create is parked, never re-sent blindly."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from modelcrew_assets.generated_reels.ffmpeg import probe
from modelcrew_assets.generated_reels.finishing import FinishSettings, finish, poster_time_s
from modelcrew_assets.generated_reels.index import Reel
from modelcrew_assets.generated_reels.labels import read_mp4_digital_source_type
from modelcrew_assets.generated_reels.ledger import ReelLedger, ReelRecord
from modelcrew_assets.generated_reels.providers import (
    AmbiguousVideoCreateError,
    VideoJobFailedError,
    VideoProvider,
    VideoProviderError,
    VideoRequest,
    VideoResultGoneError,
    VideoServiceResource,
)
from modelcrew_assets.manifest import ModelSpec
from modelcrew_assets.object_store import Storage
from modelcrew_assets.storage_keys import asset_prefix


@dataclass(frozen=True)
class ReelOutcome:
    record: ReelRecord
    reel: Reel | None = None
    created: int = 0  # jobs this run created
    problem: str = ""  # a provider error that stopped this reel (it is resumable)


def needs_new_job(record: ReelRecord | None, resubmit_ambiguous: bool) -> bool:
    """Whether the reel's next step creates (and pays for) a job: the budget counts these."""
    if record is None:
        return True
    if record.outcome in ("done", "refused") or record.live_job() is not None:
        return False
    return resubmit_ambiguous or not record.open_ambiguity


async def run_reels(
    storage: Storage,
    video: VideoServiceResource,
    spec: ModelSpec,
    records: list[ReelRecord],
    settings: FinishSettings,
    log: logging.Logger,
    resubmit_ambiguous: bool = False,
) -> list[ReelOutcome]:
    """Advance every reel (new ones arrive as records without jobs); results in the records' order."""
    ledger = ReelLedger(storage, spec.name)
    limit = asyncio.Semaphore(video.max_concurrency)
    async with video.videos(storage) as provider:

        async def one(record: ReelRecord) -> ReelOutcome:
            async with limit:
                step = _Reel(storage, ledger, provider, video, spec, settings, log)
                return await step.advance(record, resubmit_ambiguous)

        return list(await asyncio.gather(*(one(record) for record in records)))


@dataclass
class _Reel:
    storage: Storage
    ledger: ReelLedger
    provider: VideoProvider
    video: VideoServiceResource
    spec: ModelSpec
    settings: FinishSettings
    log: logging.Logger

    async def advance(self, record: ReelRecord, resubmit_ambiguous: bool) -> ReelOutcome:
        request = VideoRequest(
            still_key=record.prompt_still_key,
            still_jpeg=self.storage.get_bytes(record.prompt_still_key),
            prompt=record.prompt,
            seed=record.seed,
            duration=record.duration,
            model=record.provider_model,
        )
        created = 0
        if needs_new_job(record, resubmit_ambiguous):
            cost = record.duration * self.video.price_per_second_usd
            try:
                job_id = await self.provider.create(request)
            except AmbiguousVideoCreateError as error:
                self.log.warning(f"generated_reels: reel {record.key}: {error}; parked as needs_attention")
                return ReelOutcome(self.ledger.save(record.with_ambiguity(str(error), cost)))
            except VideoProviderError as error:
                return ReelOutcome(self.ledger.save(record.update(reason=str(error))), problem=str(error))
            record, created = self.ledger.save(record.with_job(job_id, cost)), 1
            self.log.info(f"generated_reels: reel {record.key}: {self.video.provider_name} job {job_id} created")
        job = record.live_job()
        if record.outcome != "done" and job is not None:
            record, problem = await self._collect(record, job.job_id, request)
            if problem:
                return ReelOutcome(record, created=created, problem=problem)
        if record.outcome != "done":
            return ReelOutcome(record, created=created)
        return ReelOutcome(record, await asyncio.to_thread(self._finished, record), created)

    async def _collect(self, record: ReelRecord, job_id: str, request: VideoRequest) -> tuple[ReelRecord, str]:
        """Poll the job and copy its MP4 into storage at once; a failed job is recorded as the provider said."""
        try:
            raw = await self.provider.finish(job_id, request)
        except VideoJobFailedError as error:
            outcome = "failed" if error.retryable else "refused"
            record = record.with_job_result(job_id, status="failed", failure_code=error.code, refunded=error.refunded)
            self.log.warning(f"generated_reels: reel {record.key}: {error}")
            return self.ledger.save(record.update(outcome=outcome, reason=str(error))), ""
        except VideoResultGoneError as error:
            record = record.with_job_result(job_id, status="failed", failure_code="output_expired")
            return self.ledger.save(record.update(outcome="failed", reason=str(error))), ""
        except VideoProviderError as error:
            return self.ledger.save(record.update(reason=str(error))), str(error)
        raw_key = f"{asset_prefix(self.spec.name, 'generated_reels')}raw/{record.key}.mp4"
        self.storage.put_bytes(raw_key, raw, "video/mp4")
        record = record.with_job_result(job_id, status="succeeded")
        return self.ledger.save(record.update(outcome="done", raw_key=raw_key, reason="")), ""

    def _finished(self, record: ReelRecord) -> Reel:
        """The finished reel for the current settings: made from the stored raw clip, or found in storage."""
        music_key = self.settings.music_for(record.key)
        stem = f"{asset_prefix(self.spec.name, 'generated_reels')}{record.key}-{self.settings.fingerprint(music_key)}"
        video_key, poster_key = f"{stem}.mp4", f"{stem}.jpg"
        if self.storage.exists(video_key) and self.storage.exists(poster_key):
            mp4 = self.storage.get_bytes(video_key)
        else:
            music = self.storage.get_bytes(music_key) if music_key else None
            made = finish(
                self.storage.get_bytes(record.raw_key), record.duration, self.spec, record.prompt, music, self.settings
            )
            self.storage.put_bytes(poster_key, made.poster_jpeg, "image/jpeg")
            self.storage.put_bytes(video_key, made.mp4, "video/mp4")  # last: its presence means both exist
            mp4 = made.mp4
        info = probe(mp4)
        return Reel(
            key=record.key,
            batch_id=record.batch_id,
            video_key=video_key,
            poster_key=poster_key,
            poster_at_s=poster_time_s(record.duration),
            video_sha256=self.storage.content_sha256(video_key),
            still_key=record.still_key,
            still_sha256=record.still_sha256,
            identity=record.identity,
            motion=record.motion,
            prompt=record.prompt,
            still_prompt=record.still_prompt,
            seed=record.seed,
            provider=record.provider,
            provider_model=record.provider_model,
            paid_seconds=record.duration,
            duration_s=info.duration_s,
            width=info.width,
            height=info.height,
            job_ids=tuple(record.job_ids),
            cost_usd=round(sum(job.charged_usd for job in record.jobs), 4),
            music_key=music_key,
            digital_source_type=read_mp4_digital_source_type(mp4) or "",
            c2pa_signed=self.settings.signing is not None,
            dry_run=record.dry_run,
        )
