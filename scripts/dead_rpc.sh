#!/usr/bin/env bash
# Runs the release gateway for a minute with every RPC endpoint refusing connections and
# prints its CPU time over that minute and how many log lines it wrote: a dead RPC must
# leave the gateway near idle (failed ticks back off; backing-off endpoints get no request).
#   scripts/dead_rpc.sh [SECONDS]      (CTRIP_BIN=path measures another build)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-60}"
BIN="${CTRIP_BIN:-${CARGO_TARGET_DIR:-target}/release/ctrip}"
[ -n "${CTRIP_BIN:-}" ] || cargo build --release --bin ctrip
. scripts/gateway-lib.sh
gateway_setup
cat > "$WORK/gateway.toml" <<TOML
[server]
bind = "127.0.0.1:0"
[[chains]]
name = "alpha"
chain_id = 1
rpc_urls = ["http://127.0.0.1:9", "http://127.0.0.1:19"]
confirmations = 12
block_time_ms = 1000
[[chains]]
name = "beta"
chain_id = 2
rpc_urls = ["http://127.0.0.1:29", "http://127.0.0.1:39"]
confirmations = 12
block_time_ms = 250
TOML
start_gateway "$BIN"
PID=$GATEWAY_PID
# Let it start and reach its steady state, then measure a whole window.
sleep 5
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
lines0=$(wc -l < "$WORK/gateway.log")
c0=$(cpu)
sleep "$SECS"
c1=$(cpu)
lines1=$(wc -l < "$WORK/gateway.log")
echo "every RPC endpoint refusing, ${SECS} s: CPU $(echo "scale=2; ($c1 - $c0) / $ticks" | bc) s ($(echo "scale=2; 100 * ($c1 - $c0) / $ticks / $SECS" | bc) % of one core), $((lines1 - lines0)) log lines"
echo "log lines by message:"
tail -n +"$((lines0 + 1))" "$WORK/gateway.log" | grep -o '"msg":"[^"]*"' | sort | uniq -c | sort -rn | head -10
