"""generated_batches splits a batch across prompt packs by their measured engagement, records the split and
its reason, and a resumed batch keeps the split it started with (dry-run, tiny images)."""

from __future__ import annotations

from modelcrew_assets.generated_batches.allocation import Allocation, allocation_key
from modelcrew_assets.generated_batches.prompt_packs import batch_prefix
from modelcrew_assets.handoffs import GeneratedBatch, read_index, write_index
from modelcrew_assets.post_metrics.index import ArmEstimate, PromptPackPerformance, pack_id
from modelcrew_assets_tests.test_generated_batches import MODEL, metadata, run_batch, seed_model

PROMPTS = ("blondie on a beach", "blondie in a cafe")
GENERATION = 'prompts = ["{trigger} on a beach", "{trigger} in a cafe"]\nimages = 6\nexploration_floor = 0.2\n'


def _measured(storage, favourite: int) -> None:
    arms = tuple(
        ArmEstimate(
            arm=pack_id(prompt), kind="prompt_pack", label=prompt, posts=40,
            alpha=400.0 if i == favourite else 40.0, beta=3600.0 if i == favourite else 3960.0,
            mean=0.0, low=0.0, high=0.0,
        )
        for i, prompt in enumerate(PROMPTS)
    )  # fmt: skip
    write_index(storage, PromptPackPerformance(model=MODEL, settled_posts=80, arms=arms))


def test_batch_follows_the_measured_packs_and_a_resume_keeps_its_split(local_storage, astronaut, instance):
    seed_model(local_storage, astronaut, generation=GENERATION)
    _measured(local_storage, favourite=0)
    first = run_batch(instance, local_storage, batch_id="b1", max_images=2)
    assert first.success
    shown = metadata(first)
    assert shown["allocation_method"] == "thompson" and "Thompson sampling" in shown["allocation_reason"]
    assert "| 0 | blondie on a beach | 5" in shown["allocation"]
    stored = Allocation.model_validate_json(local_storage.get_bytes(allocation_key(batch_prefix(MODEL, "b1"))))
    assert stored.counts == (5, 1)  # 80% of 6 for the leader, the 20% floor (1.2) for the other

    _measured(local_storage, favourite=1)  # the estimates change overnight; the batch started before
    resumed = run_batch(instance, local_storage, batch_id="b1")
    assert resumed.success and metadata(resumed)["allocation"] == shown["allocation"]
    prompts = [image.prompt for image in read_index(local_storage, MODEL, GeneratedBatch).images]
    assert prompts.count(PROMPTS[0]) == 5 and prompts.count(PROMPTS[1]) == 1
