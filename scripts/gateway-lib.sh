# Sourced by the scripts that run a gateway of their own (schemathesis, flood, dead_rpc):
# a fresh database on the test PostgreSQL server, a config file, and `ctrip serve` in the
# background; everything is removed on exit.
#   start_gateway BINARY     (write "$WORK/gateway.toml" first; sets GATEWAY_PID, GATEWAY_PORT)

gateway_setup() {
  if [ -z "${CTRIP_TEST_DATABASE_URL:-}" ]; then
    eval "export $(CTRIP_SETUP_PROMTOOL=0 CTRIP_SETUP_BROWSER=0 scripts/setup.sh | tail -n 1)"
  fi
  GATEWAY_DB="ctrip_script_$$_$RANDOM"
  psql "$CTRIP_TEST_DATABASE_URL" -qc "CREATE DATABASE $GATEWAY_DB" >/dev/null
  WORK="$(mktemp -d)"
  trap gateway_cleanup EXIT
  unset CTRIP_ENV
  export CTRIP__DATABASE__URL="${CTRIP_TEST_DATABASE_URL%/*}/$GATEWAY_DB"
  # A throw-away wallet: nothing is ever paid by these scripts.
  export CTRIP__WALLET__MNEMONIC="test test test test test test test test test test test junk"
  export CTRIP__ADMIN__TOKEN="script-admin-token-0123456789"
}

gateway_cleanup() {
  if [ -n "${GATEWAY_PID:-}" ]; then
    kill "$GATEWAY_PID" 2>/dev/null && wait "$GATEWAY_PID" 2>/dev/null || true
  fi
  psql "$CTRIP_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $GATEWAY_DB" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}

start_gateway() {
  "$1" --config "$WORK/gateway.toml" serve > "$WORK/gateway.log" 2>&1 &
  GATEWAY_PID=$!
  GATEWAY_PORT=""
  for _ in $(seq 1 300); do
    GATEWAY_PORT="$(grep '"msg":"serving"' "$WORK/gateway.log" | grep -o '"port":[0-9]*' | grep -o '[0-9]*$' || true)"
    [ -n "$GATEWAY_PORT" ] && return 0
    kill -0 "$GATEWAY_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "the gateway did not start:" >&2
  cat "$WORK/gateway.log" >&2
  return 1
}
