#!/usr/bin/env bash
# Installs what is missing, then runs `ctrip dev`: a throw-away PostgreSQL cluster, an anvil
# devnet and a demo merchant, serving on http://127.0.0.1:8080 (pass --port N to change).
set -euo pipefail
cd "$(dirname "$0")/.."
CTRIP_SETUP_PROMTOOL=0 CTRIP_SETUP_BROWSER=0 scripts/setup.sh >/dev/null
exec cargo run --release --quiet --bin ctrip -- dev "$@"
