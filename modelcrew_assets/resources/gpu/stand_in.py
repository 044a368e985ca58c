"""Simulated GPU work: the executor's machine runs the stand-in trainer and generator (free, CPU only; what
they make is labelled dry_run). `StandInSoftware` puts the stand-in on any executor; `SimulatedGpuResource`
is the local one that a dry-run deployment binds (resources/selection.py)."""

from __future__ import annotations

import sys
from typing import Any, ClassVar

import dagster as dg
from pydantic import Field

from modelcrew_assets.resources.gpu.local import LocalGpuResource
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.storage_keys import face_prefix, is_image_name
from modelcrew_assets.worker.generators import STAND_IN

STAND_IN_LAUNCH = f"{sys.executable} -m modelcrew_assets.worker.stand_in_trainer"


class StandInSoftware:
    """Mixin for a GpuExecutorResource: its worker renders with the stand-in generator, which pastes the
    model's reference face into every image, so the executor finds those faces (the real one needs none)."""

    simulated: ClassVar[bool] = True

    def _software_extras(self, context: dg.AssetExecutionContext, storage: StorageResource) -> dict[str, Any]:
        if not context.has_partition_key:  # partitions are models; an unpartitioned run has no face
            return {"generator": STAND_IN, "face_keys": []}
        faces = [item.key for item in storage.list(face_prefix(context.partition_key)) if is_image_name(item.key)]
        return {"generator": STAND_IN, "face_keys": faces}


class SimulatedGpuResource(StandInSoftware, LocalGpuResource):
    """The worker as a local process running the stand-in trainer and generator: the dry-run executor."""

    trainer_launch: str | None = Field(default=STAND_IN_LAUNCH, description="The stand-in trainer's command")
