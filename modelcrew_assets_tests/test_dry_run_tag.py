"""Runs that used a simulated provider carry the `modelcrew/dry_run` tag, so the runs list shows them."""

from __future__ import annotations

import dagster as dg

from modelcrew_assets.resources.captioner import CaptionerResource, CaptionServiceResource, SimulatedCaptionerResource
from modelcrew_assets.resources.service import DRY_RUN_TAG


@dg.asset
def asks_the_captioner(captioner: CaptionServiceResource) -> None:
    """Any asset that uses a provider: the tag comes from the provider, not from the asset."""


def run_tags(instance: dg.DagsterInstance, captioner: CaptionServiceResource) -> dict[str, str]:
    result = dg.materialize([asks_the_captioner], resources={"captioner": captioner}, instance=instance)
    return instance.get_run_by_id(result.run_id).tags


def test_a_run_that_used_a_simulated_provider_is_tagged_dry_run_and_a_live_one_is_not(instance):
    assert run_tags(instance, SimulatedCaptionerResource())[DRY_RUN_TAG] == "true"
    assert DRY_RUN_TAG not in run_tags(instance, CaptionerResource())
