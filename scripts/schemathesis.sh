#!/usr/bin/env bash
# Fuzzes the merchant API from its own OpenAPI document with schemathesis (PyPI), against a
# real gateway (the debug build) on a fresh database, for a bounded time. It fails on any
# 5xx, any status code the document does not list, and any response that breaks its schema.
#   scripts/schemathesis.sh            (scripts/test.sh runs it; CTRIP_SCHEMATHESIS=0 skips it)
# Knobs: ST_MAX_EXAMPLES (default 25 per operation), ST_MAX_TIME (default 180 s), ST_SEED.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "schemathesis: $*" >&2; }

ST=.tools/venv/bin/schemathesis
if [ ! -x "$ST" ]; then
  log "installing schemathesis into .tools/venv (PyPI)"
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -m venv .tools/venv >&2; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv >&2
    rm -rf .tools/venv
    python3 -m venv .tools/venv >&2
  fi
  .tools/venv/bin/pip install -q "schemathesis>=4.32,<5" >&2
fi
cargo build --bin ctrip   # shows progress: on a fresh machine this is the first full build

. scripts/gateway-lib.sh
gateway_setup
cat > "$WORK/gateway.toml" <<TOML
[server]
bind = "127.0.0.1:0"
[supervision]
enabled = false
[telemetry]
access_log_level = "off"
[[chains]]
name = "devchain"
chain_id = 31337
rpc_urls = ["http://127.0.0.1:9"]
confirmations = 2
block_time_ms = 1000
[[chains.tokens]]
symbol = "TKN"
address = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
decimals = 18
TOML
"${CARGO_TARGET_DIR:-target}/debug/ctrip" --config "$WORK/gateway.toml" migrate >/dev/null
KEY="$("${CARGO_TARGET_DIR:-target}/debug/ctrip" --config "$WORK/gateway.toml" merchant create --name schemathesis | sed -n 's/^api_key: *\([^ ]*\).*/\1/p')"
start_gateway "${CARGO_TARGET_DIR:-target}/debug/ctrip"
PORT="$GATEWAY_PORT"
log "fuzzing http://127.0.0.1:$PORT/openapi.json"
"$ST" run "http://127.0.0.1:$PORT/openapi.json" \
  -H "Authorization: Bearer $KEY" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "${ST_MAX_EXAMPLES:-25}" \
  --max-time "${ST_MAX_TIME:-180}" \
  --seed "${ST_SEED:-20261130}" \
  --workers 2 \
  --request-timeout 10 \
  --generation-database none \
  --no-color
