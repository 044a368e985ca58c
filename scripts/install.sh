#!/usr/bin/env bash
# Creates .venv in the checkout and installs modelcrew into it: --dev adds the test extra, --test adds the test
# extra and the real-model tier's (CPU torch, diffusers, transformers, peft).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
case "${1:-}" in
  --dev) .venv/bin/python -m pip install --quiet -e '.[dev]' ;;
  --test) .venv/bin/python -m pip install --quiet -e '.[dev,models]' ;;
  *) .venv/bin/python -m pip install --quiet -e . ;;
esac
