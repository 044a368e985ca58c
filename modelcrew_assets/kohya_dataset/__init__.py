"""kohya_dataset: the captioned images laid out for kohya sd-scripts, with a dataset config and a zip."""

import dagster as dg

from modelcrew_assets.kohya_dataset.assets import kohya_dataset

defs = dg.Definitions(assets=[kohya_dataset])
