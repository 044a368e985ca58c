"""The Bayesian estimate and A/B verdict (known answers), the allocation's floor and switch, and a
multi-day simulated loop in which the better prompt pack's share grows (pure functions, no asset runs)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from modelcrew_assets.generated_batches.allocation import allocate, batch_allocation, even, interleave
from modelcrew_assets.generated_batches.prompt_packs import plan_batch
from modelcrew_assets.handoffs import write_index
from modelcrew_assets.manifest import DEFAULT_PROMPTS, ModelSpec
from modelcrew_assets.post_metrics.estimate import PostOutcome, estimate, verdict, verdicts
from modelcrew_assets.post_metrics.index import ArmEstimate, PromptPackPerformance, pack_id
from modelcrew_assets.post_metrics.simulated import simulated_counts, simulated_rate


def test_estimate_known_answers():
    flat = estimate("a", [], prior_rate=0.5, prior_trials=2)  # Beta(1, 1): the uniform
    assert flat.mean == 0.5 and flat.interval == pytest.approx((0.025, 0.975))
    one = estimate("a", [PostOutcome(engagements=10, reach=100)])  # prior Beta(1, 19) + 10 of 100
    assert (one.alpha, one.beta) == pytest.approx((11, 109)) and one.mean == pytest.approx(11 / 120)
    viral = estimate("a", [PostOutcome(engagements=2000, reach=20000)])  # counts as 100 people, not 20,000
    assert (viral.alpha, viral.beta) == pytest.approx((11, 109))
    assert estimate("a", [PostOutcome(5, 0)]).posts == 0  # nobody reached: no evidence


def test_two_lucky_posts_do_not_beat_forty_good_ones():
    lucky = estimate("lucky", [PostOutcome(12, 100)] * 2)
    steady = estimate("steady", [PostOutcome(8, 100)] * 40)
    assert lucky.mean > steady.mean
    assert verdict(lucky, steady).better is None  # the intervals overlap: no verdict
    assert lucky.interval[1] - lucky.interval[0] > 2 * (steady.interval[1] - steady.interval[0])


def test_verdict_when_intervals_separate():
    good, poor = estimate("good", [PostOutcome(10, 100)] * 40), estimate("poor", [PostOutcome(2, 100)] * 40)
    decided = verdict(poor, good)
    assert (decided.better, decided.worse) == ("good", "poor") and "good beats poor" in decided.summary
    assert [v.better for v in verdicts([poor, good])] == ["good"]


def test_allocation_floor_keeps_every_pack_and_the_total():
    posteriors = {"a": (400.0, 3600.0), "b": (50.0, 1950.0), "c": (40.0, 1960.0)}  # a is far ahead
    split = allocate(["a", "b", "c"], posteriors, images=40, floor=0.15, seed=1)
    assert split.method == "thompson" and sum(split.counts) == 40
    assert split.counts[0] > 25 and min(split.counts) >= 6  # 15% of 40
    assert allocate(["a", "b", "c"], posteriors, images=40, floor=0.15, seed=1) == split  # seeded
    capped = allocate(["a", "b", "c"], posteriors, images=12, floor=0.0, seed=1, cap=4)
    assert capped.counts == (4, 4, 4)


def test_no_metrics_or_one_pack_is_the_even_split():
    assert allocate(["a", "b", "c"], {}, images=10, floor=0.1, seed=1) == even(["a", "b", "c"], 10, "x").model_copy(
        update={"reason": "no settled engagement for these prompt packs yet"}
    )
    assert even(["a", "b", "c"], 10, "r").counts == (4, 3, 3)
    assert even(["a", "b"], 5, "r").prompt_order() is None  # plan_batch keeps i mod P


def test_interleave_spreads_packs_in_proportion():
    order = interleave((6, 2))
    assert order.count(0) == 6 and order.count(1) == 2 and order[:4].count(1) == 1


def _spec(allocation: str = "thompson") -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "model": {"name": "blondie", "trigger": "blondie", "class_word": "woman"},
            "consent": {"attested_by": "studio@example.com", "basis": "synthetic"},
            "generation": {
                "prompts": ["{trigger} on a beach", "{trigger} in a cafe"],
                "images": 8,
                "allocation": allocation,
            },
        }
    )


def test_switch_off_keeps_even_and_a_stored_allocation_is_reused(local_storage):
    measured = PromptPackPerformance(
        model="blondie",
        settled_posts=40,
        arms=(
            ArmEstimate(
                arm=pack_id("blondie on a beach"),
                kind="prompt_pack",
                label="",
                posts=40,
                alpha=400,
                beta=3600,
                mean=0.1,
                low=0.09,
                high=0.11,
            ),
        ),
    )
    write_index(local_storage, measured)
    prompts = ["blondie on a beach", "blondie in a cafe"]
    off = batch_allocation(local_storage, "blondie", "b1", "p/b1/", prompts, 8, ("even", 0.1, None), started=False)
    assert off.method == "even" and "switched off" in off.reason and off.counts == (4, 4)
    on = batch_allocation(local_storage, "blondie", "b2", "p/b2/", prompts, 8, ("thompson", 0.1, None), started=False)
    assert on.method == "thompson" and on.counts[0] > on.counts[1] >= 0
    again = batch_allocation(local_storage, "blondie", "b2", "p/b2/", prompts, 8, ("even", 0.1, None), started=False)
    assert again == on  # a resumed batch keeps the split it started with
    jobs = plan_batch(_spec(), "b2", (64, 64), on.prompt_order())
    assert sum(job.prompt == prompts[0] for job in jobs) == on.counts[0]
    assert [job.platform for job in jobs if job.prompt == prompts[1]][:2] == ["instagram_feed", "tiktok"]


def test_simulated_days_grow_the_better_packs_share():
    candidates = sorted(DEFAULT_PROMPTS, key=simulated_rate)  # the demo's packs: the best and the worst
    prompts = [candidates[0], candidates[-1]]
    better = 1
    assert simulated_rate(prompts[better]) > 1.2 * simulated_rate(prompts[1 - better])
    ids = [pack_id(p) for p in prompts]
    outcomes: dict[str, list[PostOutcome]] = {pid: [] for pid in ids}
    shares = []
    for day in range(8):
        posteriors = {}
        for pid, results in outcomes.items():
            if results:
                found = estimate(pid, results)
                posteriors[pid] = (found.alpha, found.beta)
        split = allocate(ids, posteriors, images=10, floor=0.1, seed=day)
        shares.append(split.counts[better] / 10)
        for pack, count in enumerate(split.counts):
            for n in range(count):
                counts = simulated_counts(f"d{day}-p{pack}-{n}", prompts[pack], timedelta(hours=80))
                engaged = sum(counts[k] for k in ("reactions", "comments", "shares", "saves"))
                outcomes[ids[pack]].append(PostOutcome(engaged, counts["reach"]))
    assert shares[0] == 0.5  # day one: no metrics, the even split
    assert min(shares[1:]) > 0.5 and shares[-1] >= 0.8
    assert split.counts[1 - better] >= 1  # the floor: the worse pack is still tried
