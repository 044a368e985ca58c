"""checkpoint_evaluations: sample grids, identity and memorization scores, the best checkpoint picked."""

import dagster as dg

from modelcrew_assets.checkpoint_evaluations.assets import checkpoint_evaluations

defs = dg.Definitions(assets=[checkpoint_evaluations])
