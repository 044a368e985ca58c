"""generated_batches: prompt packs rendered with the chosen checkpoint, resumable, and a nightly schedule."""

import dagster as dg

from modelcrew_assets.generated_batches.assets import generated_batches
from modelcrew_assets.generated_batches.schedule import generated_batches_job, nightly_generated_batches

defs = dg.Definitions(assets=[generated_batches], jobs=[generated_batches_job], schedules=[nightly_generated_batches])
