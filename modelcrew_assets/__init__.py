"""modelcrew: photos of a persona -> SDXL likeness LoRA -> platform-ready images, as one Dagster asset graph."""
