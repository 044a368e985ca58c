"""What every outside-service interface shares: the `simulated` label, and a tag on each run that used a
simulated provider, so the runs list shows which runs made dry-run output."""

from __future__ import annotations

import abc
from typing import ClassVar

import dagster as dg

DRY_RUN_TAG = "modelcrew/dry_run"


class ServiceResource(dg.ConfigurableResource, abc.ABC):
    """Base of every provider interface (swaps, captions, GPU, posting, ...): live or simulated."""

    # The label on what it makes (dry_run in indexes, ledgers, sidecars and metadata); simulated jobs are free.
    simulated: ClassVar[bool] = False

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        run = context.dagster_run
        # Sensors and schedules build resources outside any run: nothing to tag there.
        if self.simulated and run is not None and context.instance is not None and DRY_RUN_TAG not in run.tags:
            context.instance.add_run_tags(run.run_id, {DRY_RUN_TAG: "true"})
