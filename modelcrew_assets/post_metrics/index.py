"""What prompt_pack_performance hands to the next night's batch: one Beta posterior per arm."""

from __future__ import annotations

import hashlib
from typing import ClassVar, Literal

from modelcrew_assets import asset_names
from modelcrew_assets.handoffs import Handoff, StageIndex


def pack_id(prompt: str) -> str:
    """A prompt pack's identity: its rendered text, so an edited prompt starts as a new pack."""
    return "pack-" + hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:10]


class PostMetrics(StageIndex):
    ASSET: ClassVar[str] = asset_names.POST_METRICS
    reads_prefix: str  # models/<m>/post_metrics/reads/: one CSV per read
    latest_read_key: str
    posts_read: int
    settled: int


class ArmEstimate(Handoff):
    arm: str  # pack-<hash> for a prompt pack, the motion phrase for a reel motion
    kind: Literal["prompt_pack", "reel_motion"]
    label: str  # what a person reads: the prompt or motion text
    posts: int
    alpha: float
    beta: float
    mean: float
    low: float  # the 95% credible interval
    high: float


class PromptPackPerformance(StageIndex):
    ASSET: ClassVar[str] = asset_names.PROMPT_PACK_PERFORMANCE
    settled_posts: int
    arms: tuple[ArmEstimate, ...] = ()
    verdicts: tuple[str, ...] = ()

    def packs(self) -> dict[str, ArmEstimate]:
        return {arm.arm: arm for arm in self.arms if arm.kind == "prompt_pack"}
