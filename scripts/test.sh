#!/usr/bin/env bash
# README command (2): install everything the tests need, then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# The suite includes the real-model tier (tiny SDXL on CPU), so the models extra is installed too.
scripts/install.sh --test
# exiftool reads the exported JPEGs' XMP labels back in the platform_exports tests (CI runs as root on Debian).
command -v exiftool >/dev/null || (apt-get update -qq && apt-get install -y -qq libimage-exiftool-perl)
# Lint and format first (ruff, configured in pyproject.toml): seconds, and a failure names the file and line.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Bytecode caches on, whatever the machine sets: otherwise every Python process the suite starts (CLI calls,
# run workers, steps) compiles the project's modules again (0.3 s of the definitions' 1.7 s import) and every
# worker rewrites the test modules again. Quiet runs: 393 s without caches, 342 s with. __pycache__ is ignored.
unset PYTHONDONTWRITEBYTECODE
# worksteal: a worker that runs out of tests takes queued ones from the others, so none idles at the end.
exec .venv/bin/python -m pytest -n 3 --dist worksteal "$@"
