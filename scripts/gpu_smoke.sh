#!/usr/bin/env bash
# GPU box smoke test (docs/DESIGN.md, "Tests and the fake"): 20 real kohya steps on a tiny generated
# dataset through the worker's `train`, then 4 images rendered with the result through its `generate`,
# over a local Pipes session; prints s/step, peak GPU memory and images/minute.
# Needs: an NVIDIA GPU, the worker's environment (deploy/worker/Dockerfile), MODELCREW_TRAINER_LAUNCH
# (the command up to sdxl_train_network.py) and MODELCREW_BASE_MODEL (the SDXL base file; no download).
# Exit status: 0 passed, 1 a worker command failed, 2 this box cannot run it (the reasons are printed).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${MODELCREW_PYTHON:-python3}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "gpu_smoke: $PYTHON not found; set MODELCREW_PYTHON to the worker environment's python" >&2
  exit 2
fi
exec "$PYTHON" -m modelcrew_assets.worker.smoke "$@"
