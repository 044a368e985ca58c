#!/usr/bin/env bash
# Takes docs/asset-graph.png (the README's picture) from the running Dagster UI with headless Chromium,
# driven over the DevTools protocol by scripts/screenshot_page.py.
# Starts its own webserver on a scratch DAGSTER_HOME, so it works on a fresh checkout; installs Debian's
# chromium when it is missing (needs root, as on the project's machines).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/dagster-webserver ] || scripts/install.sh
command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

port=${PORT:-3333}
home=$(mktemp -d)
cp dagster.yaml "$home/dagster.yaml"
DAGSTER_HOME="$home" MODELCREW_DRY_RUN=1 .venv/bin/dagster-webserver -w workspace.yaml -h 127.0.0.1 -p "$port" \
  >"$home/webserver.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$home"' EXIT

for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$port/server_info" >/dev/null && break
  sleep 1
done
curl -sf "http://127.0.0.1:$port/server_info" >/dev/null || { cat "$home/webserver.log"; exit 1; }

# Dismiss the first-visit dialog, fold the side panels away, unfold every asset group, zoom out to fit.
.venv/bin/python scripts/screenshot_page.py "http://127.0.0.1:$port/asset-groups" docs/asset-graph.png \
  --width 2400 --click Skip --click "Hide navigation" --icon panel_show_right:1 --icon unfold_more --icon zoom_out:4 --pan 500
echo "wrote docs/asset-graph.png"
