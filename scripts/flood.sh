#!/usr/bin/env bash
# Runs scripts/conn_flood.py against the release gateway on a fresh database and prints
# its figures (memory under 1,000 unfinished 400 KB heads, after they close, slowloris).
set -euo pipefail
cd "$(dirname "$0")/.."
# CTRIP_BIN=path measures another build.
BIN="${CTRIP_BIN:-${CARGO_TARGET_DIR:-target}/release/ctrip}"
[ -n "${CTRIP_BIN:-}" ] || cargo build --release --bin ctrip
. scripts/gateway-lib.sh
gateway_setup
ulimit -n 65536 2>/dev/null || true
cat > "$WORK/gateway.toml" <<TOML
[server]
bind = "127.0.0.1:0"
[supervision]
enabled = false
[telemetry]
access_log_level = "off"
TOML
start_gateway "$BIN"
python3 scripts/conn_flood.py --port "$GATEWAY_PORT" --pid "$GATEWAY_PID" "$@"
