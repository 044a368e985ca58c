#!/usr/bin/env bash
# README command (1): install, upload the demo model, then run the Dagster UI and daemon on 127.0.0.1:3000.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
bash scripts/install.sh

export DAGSTER_HOME="$root/.modelcrew/dagster_home"
mkdir -p "$DAGSTER_HOME"
# A link, so edits to the checkout's dagster.yaml (sqlite, queued runs, gpu pool limit 1) apply on restart.
ln -sf "$root/dagster.yaml" "$DAGSTER_HOME/dagster.yaml"
export MODELCREW_STORAGE_URL="${MODELCREW_STORAGE_URL:-file://$root/.modelcrew/storage}"

if [ -n "${MODELCREW_DRY_RUN:-}" ]; then
  echo "modelcrew: MODELCREW_DRY_RUN=$MODELCREW_DRY_RUN was set by you; keeping it"
else
  missing=()
  for name in MAXSTUDIO_API_KEY RUNPOD_API_KEY; do
    [ -n "${!name:-}" ] || missing+=("$name")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "modelcrew: live mode (MAXSTUDIO_API_KEY and RUNPOD_API_KEY are set): providers are real and cost money"
  else
    export MODELCREW_DRY_RUN=1
    echo "modelcrew: dry-run mode, simulated providers at no cost (not set: ${missing[*]})"
  fi
fi
echo "modelcrew: DAGSTER_HOME=$DAGSTER_HOME, storage $MODELCREW_STORAGE_URL"

.venv/bin/modelcrew demo
# The `gpu` pool's limit of 1 comes from dagster.yaml (concurrency.pools.default_limit), no extra step.
# Started from DAGSTER_HOME so Dagster does not warn about the checkout's own dagster.yaml.
cd "$DAGSTER_HOME"
exec "$root/.venv/bin/dagster" dev -w "$root/workspace.yaml" -h 127.0.0.1 -p 3000
