"""Which checkpoint to use, from its scores: pure rules a person can read and override.

Among checkpoints that do not memorize the training photos, take the highest identity; when several are
within `margin` of it, take the earliest step (less training, less risk of baked-in backgrounds). When no
checkpoint is good, say which way it failed and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from modelcrew_assets.worker.messages import DLIB_EMBEDDER, SFACE_EMBEDDER

# Identity thresholds and margins are per embedder: their cosine scales differ.
# SFace: OpenCV's published cosine threshold for "same identity" (0.363).
# dlib (rescaled from its 0.85 baseline, see scoring.DlibEmbedder), measured by benchmarks/face_models.py on
# scikit-image's LFW subset: 0.37 is dlib's own same-person radius (Euclidean 0.6 between descriptors of
# length 1.378 = cosine 0.905 = identity 0.368). There, different faces average 0.06 and 6.4% of them are
# above 0.37 (the highest are the same person in two photos: the subset repeats people); the same photo
# taken again scores 0.94 +- 0.04 and never under 0.37. The margin 0.03 is under one sd of that noise.
# lbp-grid-v1 (the Haar + LBP embedder dlib replaced) stays readable: stored evaluations scored with it are
# reused by a manual checkpoint_step override.
LBP_EMBEDDER = "lbp-grid-v1"
IDENTITY_THRESHOLDS = {SFACE_EMBEDDER: 0.363, DLIB_EMBEDDER: 0.37, LBP_EMBEDDER: 0.40}
IDENTITY_MARGINS = {SFACE_EMBEDDER: 0.02, DLIB_EMBEDDER: 0.03, LBP_EMBEDDER: 0.03}
# 32x32 thumbnail correlation: a near-copy of a training photo, or the same picture for every prompt.
MEMORIZATION_THRESHOLD = 0.85
CROSS_PROMPT_THRESHOLD = 0.85

Verdict = Literal["chosen", "manual", "all_underfit", "all_overfit", "no_sweet_spot"]
StepVerdict = Literal["ok", "underfit", "memorizing"]


@dataclass(frozen=True)
class Thresholds:
    identity: float
    margin: float
    memorization: float = MEMORIZATION_THRESHOLD
    cross_prompt: float = CROSS_PROMPT_THRESHOLD

    @classmethod
    def for_embedder(cls, embedder: str, **overrides: float | None) -> Thresholds:
        """The embedder's defaults, with any non-None override applied."""
        if embedder not in IDENTITY_THRESHOLDS:
            raise ValueError(f"no identity threshold is known for embedder {embedder!r}; set identity_threshold")
        values = {"identity": IDENTITY_THRESHOLDS[embedder], "margin": IDENTITY_MARGINS[embedder]}
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**values)


@dataclass(frozen=True)
class StepScores:
    step: int
    identity: float
    face_detection_rate: float
    memorization: float
    cross_prompt_similarity: float

    def memorizing(self, thresholds: Thresholds) -> bool:
        return self.memorization >= thresholds.memorization or self.cross_prompt_similarity >= thresholds.cross_prompt

    def verdict(self, thresholds: Thresholds) -> StepVerdict:
        if self.memorizing(thresholds):
            return "memorizing"
        return "underfit" if self.identity < thresholds.identity else "ok"


@dataclass(frozen=True)
class Selection:
    step: int
    verdict: Verdict
    reason: str  # one sentence
    action: str  # what to do next; empty when the choice is good
    automatic_step: int  # what the rules picked (differs from step only for a manual choice)

    @property
    def manual(self) -> bool:
        return self.verdict == "manual"


TRAIN_LONGER = "train longer (raise [training].max_train_steps) or check that the dataset's faces are clear"
LESS_TRAINING = "retrain with fewer repeats or a lower learning_rate, or take an earlier save step"
FINER_SAVES = "retrain with a lower learning_rate and save_every_n_steps halved to land between the two"


def select_checkpoint(
    scores: Sequence[StepScores], thresholds: Thresholds, manual_step: int | None = None
) -> Selection:
    if not scores:
        raise ValueError("no checkpoint scores to choose from; materialize lora_checkpoints first")
    ordered = sorted(scores, key=lambda s: s.step)
    automatic = _automatic(ordered, thresholds)
    if manual_step is None:
        return automatic
    steps = [s.step for s in ordered]
    if manual_step not in steps:
        raise ValueError(
            f"checkpoint_step {manual_step} is not one of the evaluated steps ({', '.join(map(str, steps))}); "
            "pick one of them"
        )
    chosen = next(s for s in ordered if s.step == manual_step)
    return Selection(
        step=manual_step,
        verdict="manual",
        reason=f"Step {manual_step} was chosen by hand (run config checkpoint_step; identity {chosen.identity:.3f}, "
        f"memorization {chosen.memorization:.3f}); the rules would take step {automatic.step}.",
        action="",
        automatic_step=automatic.step,
    )


def _automatic(ordered: list[StepScores], t: Thresholds) -> Selection:
    fresh = [s for s in ordered if not s.memorizing(t)]
    if not fresh:
        least = min(ordered, key=lambda s: (max(s.memorization, s.cross_prompt_similarity), s.step))
        return Selection(
            least.step,
            "all_overfit",
            f"All {len(ordered)} checkpoints memorize the training photos (nearest-photo similarity >= "
            f"{t.memorization} or the same picture for every prompt); step {least.step} memorizes least "
            f"({least.memorization:.3f}).",
            LESS_TRAINING,
            least.step,
        )
    best = max(fresh, key=lambda s: (s.identity, -s.step))
    if best.identity < t.identity:
        strong = [s.step for s in ordered if s.identity >= t.identity]
        if strong:
            return Selection(
                best.step,
                "no_sweet_spot",
                f"No checkpoint is both like the face and free of memorization: steps {_steps(strong)} reach "
                f"identity {t.identity} but copy the training photos, the rest stay under it (best step "
                f"{best.step}, {best.identity:.3f}).",
                FINER_SAVES,
                best.step,
            )
        return Selection(
            best.step,
            "all_underfit",
            f"No checkpoint reaches identity {t.identity} (best {best.identity:.3f} at step {best.step}, faces "
            f"found in {best.face_detection_rate:.0%} of its samples); the LoRA is underfit.",
            TRAIN_LONGER,
            best.step,
        )
    near = [s for s in fresh if s.identity >= max(best.identity - t.margin, t.identity)]
    chosen = min(near, key=lambda s: s.step)
    reason = (
        f"Step {chosen.step} is the most like the face of the checkpoints that do not memorize (identity "
        f"{chosen.identity:.3f}, faces in {chosen.face_detection_rate:.0%} of samples, memorization "
        f"{chosen.memorization:.3f})"
    )
    if chosen.step != best.step:
        reason += f", within {t.margin} of step {best.step} ({best.identity:.3f}) and earlier"
    return Selection(chosen.step, "chosen", reason + ".", "", chosen.step)


def _steps(steps: Sequence[int]) -> str:
    return ", ".join(str(step) for step in steps)
