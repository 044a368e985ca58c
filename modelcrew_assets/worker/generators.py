"""The renderers a worker can use, named once for both sides: the executor that launches the worker says
which one its machine runs (extras["generator"]); stage code never names one."""

DIFFUSERS = "diffusers"  # SDXL + LoRA through diffusers, in the worker image
STAND_IN = "stand_in"  # the stand-in generator of simulated executors: CPU, free, labelled dry_run
GENERATORS = (DIFFUSERS, STAND_IN)
