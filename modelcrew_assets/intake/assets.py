"""The user's inputs as an asset the graph starts from, and the job that builds everything below it."""

import dagster as dg

from modelcrew_assets import asset_names
from modelcrew_assets.partitions import models_partitions

model_uploads = dg.AssetSpec(
    asset_names.MODEL_UPLOADS,
    description=(
        "A model's uploads: manifest (model.toml), face image(s) and target photos under uploads/<model>/. "
        "Made by people, not by Dagster: the upload sensor observes it (one observation per change, with "
        "the file counts), so it is never materialized and a partition shows as observed, not as filled."
    ),
    partitions_def=models_partitions,
    group_name="intake",
    kinds={"s3"},
)

model_pipeline_job = dg.define_asset_job(
    name="model_pipeline",
    description="Everything downstream of a model's uploads, for one model partition.",
    # Analytics (post_metrics and what learns from it) runs on its own daily schedule: right after posting
    # there is nothing to measure yet.
    selection=dg.AssetSelection.assets(model_uploads.key).downstream(include_self=False)
    - dg.AssetSelection.groups("analytics"),
    partitions_def=models_partitions,
)
