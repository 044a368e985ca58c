"""How a batch's images are split across the prompt packs: Thompson sampling on engagement (pure core).

Each pack's share is its probability of being the best pack under prompt_pack_performance's Beta
posteriors (probability matching, estimated from `DRAWS` seeded draws), after every pack is given the
exploration floor ([generation].exploration_floor, at most an even share). A pack nobody has measured
gets the prior, so it keeps being tried. With no settled metrics, or [generation].allocation = "even",
the batch is today's even split (image i uses prompt i mod P). The decision is stored with the batch
(allocation.json) before anything is rendered, so a resumed batch keeps the split it started with.

The loop closes through storage, not the asset graph: prompt_pack_performance is downstream of this
stage (graphs are acyclic), so the batch reads the latest estimate written by a night before.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from modelcrew_assets.handoffs import MissingUpstreamError, read_index
from modelcrew_assets.object_store import Storage
from modelcrew_assets.post_metrics.estimate import PRIOR_RATE, PRIOR_TRIALS
from modelcrew_assets.post_metrics.index import PromptPackPerformance, pack_id

DRAWS = 4000


class Allocation(BaseModel):
    model_config = ConfigDict(frozen=True)

    method: Literal["even", "thompson"]
    reason: str
    pack_ids: tuple[str, ...]  # in [generation].prompts order
    counts: tuple[int, ...]  # images per pack
    shares: tuple[float, ...]  # the target shares the counts round
    best_probability: tuple[float, ...] = ()  # P(pack is best) under the posteriors (thompson only)

    def prompt_order(self) -> tuple[int, ...] | None:
        """Which prompt each image uses, packs interleaved; None: the even split's i mod P."""
        return interleave(self.counts) if self.method == "thompson" else None


def even(pack_ids: Sequence[str], images: int, reason: str) -> Allocation:
    packs = len(pack_ids)
    counts = tuple(images // packs + (1 if i < images % packs else 0) for i in range(packs))
    return Allocation(
        method="even", reason=reason, pack_ids=tuple(pack_ids), counts=counts, shares=tuple([1 / packs] * packs)
    )


def allocate(
    pack_ids: Sequence[str],
    posteriors: dict[str, tuple[float, float]],
    images: int,
    floor: float,
    seed: int,
    cap: int | None = None,
) -> Allocation:
    """Thompson shares over `pack_ids`; packs missing from `posteriors` get the prior. `cap`: most images
    one pack may have (a listed seed set allows only so many distinct images per prompt)."""
    if len(set(pack_ids)) < 2:
        return even(pack_ids, images, "one prompt pack: nothing to choose between")
    if not any(pid in posteriors for pid in pack_ids):
        return even(pack_ids, images, "no settled engagement for these prompt packs yet")
    prior = (PRIOR_RATE * PRIOR_TRIALS, (1 - PRIOR_RATE) * PRIOR_TRIALS)
    alphas, betas = zip(*(posteriors.get(pid, prior) for pid in pack_ids), strict=True)
    draws = np.random.default_rng(seed).beta(alphas, betas, size=(DRAWS, len(pack_ids)))
    best = np.bincount(draws.argmax(axis=1), minlength=len(pack_ids)) / DRAWS
    floor = min(floor, 1 / len(pack_ids))
    shares = [floor + (1 - floor * len(pack_ids)) * float(p) for p in best]
    counts = _rounded(shares, images, math.floor(floor * images), cap)
    leader = int(np.argmax(best))
    return Allocation(
        method="thompson",
        reason=(
            f"Thompson sampling on settled engagement: pack {leader} is best with probability {best[leader]:.0%}; "
            f"every pack keeps at least {floor:.0%}"
        ),
        pack_ids=tuple(pack_ids),
        counts=counts,
        shares=tuple(shares),
        best_probability=tuple(float(p) for p in best),
    )


def interleave(counts: Sequence[int]) -> tuple[int, ...]:
    """Packs spread through the batch in proportion (largest deficit first), so a capped run still
    renders every pack in its share."""
    total = sum(counts)
    given = [0] * len(counts)
    order = []
    for position in range(1, total + 1):
        deficits = [count * position / total - given[i] for i, count in enumerate(counts)]
        chosen = max(range(len(counts)), key=lambda i: (deficits[i], -i))
        given[chosen] += 1
        order.append(chosen)
    return tuple(order)


def _rounded(shares: Sequence[float], images: int, minimum: int, cap: int | None) -> tuple[int, ...]:
    """Largest-remainder rounding that keeps every pack at `minimum` and none above `cap`."""
    limit = images if cap is None else cap
    raw = [share * images for share in shares]
    counts = [min(limit, max(minimum, math.floor(value))) for value in raw]
    while sum(counts) > images:  # the floor pushed the total over: the largest pack gives way
        counts[counts.index(max(counts))] -= 1
    order = sorted(range(len(raw)), key=lambda i: (math.floor(raw[i]) - raw[i], -raw[i]))
    while sum(counts) < images and any(counts[i] < limit for i in order):
        for i in order:
            if sum(counts) < images and counts[i] < limit:
                counts[i] += 1
    return tuple(counts)


def allocation_table(allocation: Allocation, prompts: Sequence[str]) -> str:
    rows = [f"**{allocation.method}**: {allocation.reason}", "", "| pack | prompt | images | share | P(best) |"]
    rows.append("| --- | --- | --- | --- | --- |")
    chances = allocation.best_probability or (None,) * len(allocation.counts)
    for i, (prompt, count, share, chance) in enumerate(
        zip(prompts, allocation.counts, allocation.shares, chances, strict=False)
    ):
        best = "-" if chance is None else f"{chance:.0%}"
        rows.append(f"| {i} | {prompt[:80]} | {count} {'█' * round(share * 20)} | {share:.0%} | {best} |")
    return "\n".join(rows)


def allocation_key(batch_prefix: str) -> str:
    return f"{batch_prefix}allocation.json"


def batch_allocation(
    storage: Storage,
    model: str,
    batch_id: str,
    batch_prefix: str,
    prompts: Sequence[str],
    images: int,
    settings: tuple[str, float, int | None],
    started: bool,
) -> Allocation:
    """The batch's stored allocation, else a new one (stored before rendering). `settings`: (the manifest's
    allocation switch, exploration floor, cap per pack); `started`: images are already stored."""
    key = allocation_key(batch_prefix)
    if storage.exists(key):
        return Allocation.model_validate_json(storage.get_bytes(key))
    switch, floor, cap = settings
    ids = [pack_id(prompt) for prompt in prompts]
    if started:
        decided = even(ids, images, "the batch was started before allocations were recorded: kept even")
    elif switch == "even":
        decided = even(ids, images, 'switched off: [generation].allocation = "even"')
    else:
        decided = allocate(ids, _posteriors(storage, model), images, floor, _seed(model, batch_id), cap)
    storage.put_bytes(key, decided.model_dump_json(indent=2).encode(), "application/json")
    return decided


def _posteriors(storage: Storage, model: str) -> dict[str, tuple[float, float]]:
    try:
        measured = read_index(storage, model, PromptPackPerformance)
    except MissingUpstreamError:
        return {}
    return {arm.arm: (arm.alpha, arm.beta) for arm in measured.packs().values() if arm.posts > 0}


def _seed(model: str, batch_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"allocation\x00{model}\x00{batch_id}".encode()).digest()[:8], "big")
