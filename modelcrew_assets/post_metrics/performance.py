"""Which prompt pack (and reel motion) each measured post came from, and the arms' estimates.

A post's pack is found through storage: its ledger entry names the batch and source image, the batch's
batch.json holds the image's prompt; a reel's record (generated_reels' ledger) names its still and motion.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import PurePosixPath

from pydantic import ValidationError

from modelcrew_assets.asset_names import GENERATED_REELS
from modelcrew_assets.generated_batches.prompt_packs import batch_json_key
from modelcrew_assets.generated_reels.ledger import ReelRecord
from modelcrew_assets.handoffs import GeneratedBatch
from modelcrew_assets.object_store import Storage
from modelcrew_assets.post_metrics.estimate import Estimate, PostOutcome, estimate, verdicts
from modelcrew_assets.post_metrics.index import ArmEstimate, PromptPackPerformance, pack_id
from modelcrew_assets.post_metrics.series import MetricRow
from modelcrew_assets.scheduled_posts.ledger import PostEntry
from modelcrew_assets.storage_keys import asset_prefix


class Prompts:
    """Source image key -> prompt, and reel key -> (still key, motion), read once per batch / ledger."""

    def __init__(self, storage: Storage, model: str):
        self._storage = storage
        self._model = model
        self._batches: dict[str, dict[str, str]] = {}
        self._reels: dict[str, tuple[str, str]] | None = None

    def prompt(self, batch_id: str, image_key: str) -> str:
        if batch_id not in self._batches:
            self._batches[batch_id] = self._batch_prompts(batch_id)
        return self._batches[batch_id].get(image_key, "")

    def reel(self, source_key: str) -> tuple[str, str] | None:
        if self._reels is None:
            self._reels = self._reel_records()
        return self._reels.get(PurePosixPath(source_key).stem)

    def _batch_prompts(self, batch_id: str) -> dict[str, str]:
        try:
            batch = GeneratedBatch.model_validate_json(self._storage.get_bytes(batch_json_key(self._model, batch_id)))
        except (KeyError, ValidationError):
            return {}
        return {image.key: image.prompt for image in batch.images}

    def _reel_records(self) -> dict[str, tuple[str, str]]:
        records = {}
        for item in self._storage.list(f"{asset_prefix(self._model, GENERATED_REELS)}ledger/"):
            try:
                record = ReelRecord.model_validate_json(self._storage.get_bytes(item.key))
            except ValidationError:
                continue
            records[PurePosixPath(record.key).stem] = (record.still_key, record.motion)
        return records


def arm_outcomes(
    entries: list[PostEntry], settled: dict[str, MetricRow], prompts: Prompts
) -> tuple[dict[tuple[str, str], list[PostOutcome]], dict[str, str]]:
    """(kind, arm) -> the outcomes of its settled posts; arm -> its label."""
    outcomes: dict[tuple[str, str], list[PostOutcome]] = defaultdict(list)
    labels: dict[str, str] = {}
    for entry in entries:
        row = settled.get(entry.post_id or "")
        if row is None:
            continue
        outcome = PostOutcome(row.engagements, row.audience)
        image_key, reel = entry.source_key, prompts.reel(entry.source_key)
        if reel is not None:
            image_key, motion = reel
            outcomes[("reel_motion", motion)].append(outcome)
            labels[motion] = motion
        prompt = prompts.prompt(entry.batch_id, image_key)
        if prompt:
            outcomes[("prompt_pack", pack_id(prompt))].append(outcome)
            labels[pack_id(prompt)] = prompt
    return outcomes, labels


def performance(
    model: str, outcomes: dict[tuple[str, str], list[PostOutcome]], labels: dict[str, str], dry_run: bool
) -> PromptPackPerformance:
    """One estimate per arm; A/B verdicts among the packs and among the motions, each kind on its own."""
    by_kind: dict[str, list[Estimate]] = defaultdict(list)
    for (kind, arm), results in sorted(outcomes.items()):
        by_kind[kind].append(estimate(arm, results))
    arms = [
        _arm(found, kind, labels.get(found.arm, found.arm))
        for kind, found_arms in by_kind.items()
        for found in found_arms
    ]
    said = [_named(v.summary, labels) for found_arms in by_kind.values() for v in verdicts(found_arms)]
    settled = sum(len(results) for (kind, _), results in outcomes.items() if kind == "prompt_pack")
    return PromptPackPerformance(
        model=model, dry_run=dry_run, settled_posts=settled, arms=tuple(arms), verdicts=tuple(said)
    )


def _named(summary: str, labels: dict[str, str]) -> str:
    """The verdict with each pack's hashed id replaced by the start of its prompt."""
    for arm, label in labels.items():
        summary = summary.replace(arm, repr(label[:48]))
    return summary


def _arm(found: Estimate, kind: str, label: str) -> ArmEstimate:
    low, high = found.interval
    return ArmEstimate(
        arm=found.arm,
        kind=kind,
        label=label,
        posts=found.posts,
        alpha=found.alpha,
        beta=found.beta,
        mean=found.mean,
        low=low,
        high=high,
    )
