#!/usr/bin/env bash
# Takes docs/asset-graph.png (the README's picture) from the running Dagster UI with headless Chromium.
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

# The flags keep Chromium from reaching for Google's services, which this machine's network refuses.
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --hide-scrollbars \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$home/chromium" --window-size=1600,1000 --virtual-time-budget=20000 \
  --screenshot=docs/asset-graph.png "http://127.0.0.1:$port/asset-groups" 2>/dev/null
echo "wrote docs/asset-graph.png"
