"""Everything Dagster loads, listed in pipeline order: each stage's assets (their checks ride on them as
check specs), jobs, schedules and sensors; resources come from the environment, live or simulated as
resources/selection.py decides. The stage packages' __init__ modules import nothing, so a pure module
(a ledger, the export core, the worker's contracts) is imported without Dagster or the other stages."""

import dagster as dg

from modelcrew_assets.alerts.sensors import run_failure_alert
from modelcrew_assets.captions.assets import captions
from modelcrew_assets.checkpoint_evaluations.assets import checkpoint_evaluations
from modelcrew_assets.executors import forkserver_executor
from modelcrew_assets.generated_batches.assets import generated_batches
from modelcrew_assets.generated_batches.schedule import generated_batches_job, nightly_generated_batches
from modelcrew_assets.generated_reels.assets import generated_reels
from modelcrew_assets.gpu_sweeper.sensors import gpu_pod_sweeper
from modelcrew_assets.intake.assets import model_pipeline_job, model_uploads
from modelcrew_assets.intake.sensors import model_uploads_sensor
from modelcrew_assets.kohya_dataset.assets import kohya_dataset
from modelcrew_assets.lora_checkpoints.assets import lora_checkpoints
from modelcrew_assets.platform_exports.assets import platform_exports
from modelcrew_assets.post_metrics.assets import post_metrics, prompt_pack_performance
from modelcrew_assets.post_metrics.schedule import daily_post_metrics, post_metrics_job
from modelcrew_assets.resources.selection import resources_from_env
from modelcrew_assets.scheduled_posts.assets import scheduled_posts
from modelcrew_assets.swapped_faces.assets import swapped_faces
from modelcrew_assets.swapped_faces.checks import swapped_faces_quality_gate

defs = dg.Definitions(
    assets=[
        model_uploads,
        swapped_faces,
        captions,
        kohya_dataset,
        lora_checkpoints,
        checkpoint_evaluations,
        generated_batches,
        platform_exports,
        generated_reels,
        scheduled_posts,
        post_metrics,
        prompt_pack_performance,
    ],
    # The one stage whose checks are a step of their own: they decode every swapped photo once, together.
    asset_checks=[swapped_faces_quality_gate],
    jobs=[model_pipeline_job, generated_batches_job, post_metrics_job],
    schedules=[nightly_generated_batches, daily_post_metrics],
    sensors=[model_uploads_sensor, run_failure_alert, gpu_pod_sweeper],
    resources=resources_from_env(),
    # Every job, the UI's ad hoc materializations included, forks its steps from preloaded definitions.
    executor=forkserver_executor,
)
