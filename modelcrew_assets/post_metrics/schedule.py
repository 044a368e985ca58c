"""The daily read: one run per model with posts, off until switched on (like the nightly batch)."""

from __future__ import annotations

from datetime import UTC

import dagster as dg

from modelcrew_assets.partitions import models_partitions
from modelcrew_assets.post_metrics.assets import post_metrics, prompt_pack_performance
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.scheduled_posts.ledger import ledger_prefix

post_metrics_job = dg.define_asset_job(
    name="post_metrics_job",
    description="Read one model's post metrics and update its prompt pack estimates.",
    selection=dg.AssetSelection.assets(post_metrics, prompt_pack_performance),
    partitions_def=models_partitions,
)


@dg.schedule(
    job=post_metrics_job,
    cron_schedule="0 0 * * *",  # an hour before the nightly batch, which reads the estimates
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Each day: read engagement of every model's posts; off until switched on.",
)
def daily_post_metrics(context: dg.ScheduleEvaluationContext, storage: StorageResource):
    """run_key = '<model>:<date>': a tick evaluated twice reads once."""
    date = context.scheduled_execution_time.astimezone(UTC).date().isoformat()
    models = sorted(context.instance.get_dynamic_partitions(models_partitions.name))
    posting = [model for model in models if any(True for _ in storage.list(ledger_prefix(model)))]
    if not posting:
        return dg.SkipReason(f"no model has posts yet ({len(models)} models); materialize scheduled_posts first")
    return [dg.RunRequest(run_key=f"{model}:{date}", partition_key=model) for model in posting]
