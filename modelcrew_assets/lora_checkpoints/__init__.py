"""lora_checkpoints: kohya SDXL LoRA training on the GPU executor, through Dagster Pipes."""
