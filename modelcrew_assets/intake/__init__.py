"""Intake: the user's uploads, the sensor that notices them, and the job it starts."""

import dagster as dg

from modelcrew_assets.intake.assets import model_pipeline_job, model_uploads
from modelcrew_assets.intake.sensors import model_uploads_sensor

defs = dg.Definitions(assets=[model_uploads], jobs=[model_pipeline_job], sensors=[model_uploads_sensor])
