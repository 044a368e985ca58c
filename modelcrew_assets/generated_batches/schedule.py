"""The nightly batch: one run per model that has a chosen checkpoint; the runs queue in the `gpu` pool."""

from __future__ import annotations

from datetime import UTC

import dagster as dg

from modelcrew_assets.generated_batches.assets import BATCH_TAG, generated_batches
from modelcrew_assets.handoffs import CheckpointEvaluations, index_key
from modelcrew_assets.partitions import models_partitions
from modelcrew_assets.resources.storage import StorageResource

generated_batches_job = dg.define_asset_job(
    name="generated_batches_job",
    description="Render (or finish) one model's generated batch.",
    selection=dg.AssetSelection.assets(generated_batches),
    partitions_def=models_partitions,
)


@dg.schedule(
    job=generated_batches_job,
    cron_schedule="0 1 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Each night: a new batch per model, batch id nightly-<date>; off until switched on.",
)
def nightly_generated_batches(context: dg.ScheduleEvaluationContext, storage: StorageResource):
    """run_key = '<model>:<date>': a tick evaluated twice never starts a second batch for the same night."""
    date = context.scheduled_execution_time.astimezone(UTC).date().isoformat()
    models = sorted(context.instance.get_dynamic_partitions(models_partitions.name))
    ready = [model for model in models if storage.exists(index_key(model, CheckpointEvaluations.ASSET))]
    waiting = [model for model in models if model not in ready]
    if waiting:
        context.log.info(f"no chosen checkpoint yet (skipped tonight): {', '.join(waiting)}")
    if not ready:
        return dg.SkipReason(
            f"no model has a chosen checkpoint yet ({len(models)} models); materialize checkpoint_evaluations first"
        )
    return [
        dg.RunRequest(run_key=f"{model}:{date}", partition_key=model, tags={BATCH_TAG: f"nightly-{date}"})
        for model in ready
    ]
