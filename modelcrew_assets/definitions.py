"""Everything Dagster loads: each stage contributes its own Definitions; resources come from the environment,
live or simulated as resources/selection.py decides."""

import dagster as dg

from modelcrew_assets import (
    alerts,
    captions,
    checkpoint_evaluations,
    generated_batches,
    generated_reels,
    gpu_sweeper,
    intake,
    kohya_dataset,
    lora_checkpoints,
    platform_exports,
    post_metrics,
    scheduled_posts,
    swapped_faces,
)
from modelcrew_assets.executors import forkserver_executor
from modelcrew_assets.resources.selection import resources_from_env

defs = dg.Definitions.merge(
    intake.defs,
    alerts.defs,
    platform_exports.defs,
    swapped_faces.defs,
    captions.defs,
    kohya_dataset.defs,
    lora_checkpoints.defs,
    checkpoint_evaluations.defs,
    generated_batches.defs,
    generated_reels.defs,
    scheduled_posts.defs,
    post_metrics.defs,
    gpu_sweeper.defs,
    # Every job, the UI's ad hoc materializations included, forks its steps from preloaded definitions.
    dg.Definitions(resources=resources_from_env(), executor=forkserver_executor),
)
