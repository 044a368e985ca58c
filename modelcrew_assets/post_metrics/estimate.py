"""Engagement per reach as a Bayesian estimate, and the A/B verdict between two arms (pure).

Each arm (a prompt pack, a reel motion) has a Beta posterior over its engagement rate. A post adds its
engagements as successes and its reach as trials, but counts as at most `POST_WEIGHT` reached people:
the people reached by one post react to the same picture, so 20,000 views of one post are not 20,000
independent trials, and evidence should grow with posts, not with one viral outlier. The prior is weak
(`PRIOR_TRIALS` pseudo-people at `PRIOR_RATE`), so a pack with 2 posts cannot win over one with 40.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

PRIOR_RATE = 0.05  # a typical Instagram engagement rate per reach
PRIOR_TRIALS = 20.0
POST_WEIGHT = 100.0
CREDIBLE_MASS = 0.95


@dataclass(frozen=True)
class PostOutcome:
    engagements: float
    reach: float


@dataclass(frozen=True)
class Estimate:
    arm: str
    posts: int
    alpha: float
    beta: float

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    @property
    def interval(self) -> tuple[float, float]:
        """The equal-tailed credible interval holding CREDIBLE_MASS of the posterior."""
        # Imported here, not with the definitions: only prompt_pack_performance needs scipy.special's import tree.
        from scipy.special import betaincinv

        tail = (1 - CREDIBLE_MASS) / 2
        return float(betaincinv(self.alpha, self.beta, tail)), float(betaincinv(self.alpha, self.beta, 1 - tail))


@dataclass(frozen=True)
class Verdict:
    better: str | None  # the arm whose interval lies wholly above the other's; None: not decided yet
    worse: str | None
    summary: str


def estimate(
    arm: str,
    outcomes: Iterable[PostOutcome],
    prior_rate: float = PRIOR_RATE,
    prior_trials: float = PRIOR_TRIALS,
    post_weight: float = POST_WEIGHT,
) -> Estimate:
    alpha, beta, posts = prior_rate * prior_trials, (1 - prior_rate) * prior_trials, 0
    for outcome in outcomes:
        if outcome.reach <= 0:
            continue  # nobody saw it: no evidence either way
        rate = min(1.0, max(0.0, outcome.engagements / outcome.reach))
        weight = min(outcome.reach, post_weight)
        alpha += rate * weight
        beta += (1 - rate) * weight
        posts += 1
    return Estimate(arm=arm, posts=posts, alpha=alpha, beta=beta)


def verdict(a: Estimate, b: Estimate) -> Verdict:
    """An A/B verdict only when the credible intervals separate; otherwise 'not decided yet'."""
    (a_low, a_high), (b_low, b_high) = a.interval, b.interval
    if a_low > b_high:
        return Verdict(a.arm, b.arm, f"{a.arm} beats {b.arm} ({a_low:.2%} > {b_high:.2%})")
    if b_low > a_high:
        return Verdict(b.arm, a.arm, f"{b.arm} beats {a.arm} ({b_low:.2%} > {a_high:.2%})")
    return Verdict(None, None, f"{a.arm} vs {b.arm}: not decided yet (intervals overlap)")


def verdicts(estimates: list[Estimate]) -> list[Verdict]:
    """The leader (highest mean) against every other arm."""
    if len(estimates) < 2:
        return []
    leader, *others = sorted(estimates, key=lambda e: -e.mean)
    return [verdict(leader, other) for other in others]
