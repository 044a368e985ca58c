"""lora_checkpoints: kohya SDXL LoRA training on the GPU executor, through Dagster Pipes."""

import dagster as dg

from modelcrew_assets.lora_checkpoints.assets import lora_checkpoints

defs = dg.Definitions(assets=[lora_checkpoints])
