#!/usr/bin/env bash
# Installs what the gateway's dev run and test suite need, only where it is missing:
#   - PostgreSQL server binaries (Debian package postgresql) and a server for the tests,
#   - anvil (npm package @foundry-rs/anvil), and playwright-core, jsqr and pngjs for the
#     checkout page's browser test (all pinned in package-lock.json),
#   - Chromium (Debian package chromium) for that browser test,
#   - promtool, Prometheus and Alertmanager (Debian packages prometheus and
#     prometheus-alertmanager) for the alert-rule tests and the end-to-end alert test,
#   - opentelemetry-proto (PyPI, in .tools/venv) to decode exported spans in the tests,
#   - curl, Node.js/npm, cargo-nextest when absent.
# Prints the test database URL on its last line as: CTRIP_TEST_DATABASE_URL=...
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "setup: $*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 && SUDO="sudo"
fi

APT_UPDATED=0
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    log "apt-get not available; install $* by hand"; return 1
  fi
  if [ "$APT_UPDATED" -eq 0 ]; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    APT_UPDATED=1
  fi
  log "installing $*"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

pg_bindir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

# --- packages -------------------------------------------------------------------------
need=()
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
[ -n "$(pg_bindir)" ] && [ -x "$(pg_bindir)/initdb" ] || need+=(postgresql)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ "${CTRIP_SETUP_PROMTOOL:-1}" = "1" ]; then
  command -v promtool >/dev/null 2>&1 || need+=(prometheus)
fi
if [ ${#need[@]} -gt 0 ]; then
  apt_install "${need[@]}"
fi

if [ "${CTRIP_SETUP_BROWSER:-1}" = "1" ] && [ ! -x /usr/bin/chromium ]; then
  apt_install chromium
fi

npm_ready=1
for m in @foundry-rs/anvil playwright-core jsqr pngjs; do
  [ -f "node_modules/$m/package.json" ] || npm_ready=0
done
if [ "$npm_ready" -eq 0 ] || [ ! -x node_modules/.bin/anvil ]; then
  log "installing anvil and the browser test's packages from npm"
  npm ci --no-audit --no-fund --loglevel=error >&2
fi

# --- Python tools for the tests (.tools/venv): the OTLP decoder the tracing tests use -------
if [ ! -x .tools/venv/bin/python ] || ! .tools/venv/bin/python -c 'import opentelemetry.proto' 2>/dev/null; then
  log "installing opentelemetry-proto into .tools/venv (PyPI)"
  if ! python3 -m venv .tools/venv >&2 2>/dev/null; then
    apt_install python3 python3-venv
    rm -rf .tools/venv
    python3 -m venv .tools/venv >&2
  fi
  .tools/venv/bin/pip install -q "opentelemetry-proto>=1.27,<2" >&2
fi

# --- Prometheus and Alertmanager servers for the end-to-end alert test ----------------
if [ "${CTRIP_SETUP_PROMTOOL:-1}" = "1" ]; then
  alert_need=()
  [ -x /usr/bin/prometheus ] || alert_need+=(prometheus)
  [ -x /usr/bin/prometheus-alertmanager ] || alert_need+=(prometheus-alertmanager)
  if [ ${#alert_need[@]} -gt 0 ]; then
    apt_install "${alert_need[@]}"
  fi
fi

# --- a PostgreSQL server for the tests --------------------------------------------------
URL="${CTRIP_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
if psql "$URL" -Atqc 'SELECT 1' >/dev/null 2>&1; then
  echo "CTRIP_TEST_DATABASE_URL=$URL"
  exit 0
fi

# Nothing usable answers (no server, or one that wants a password): run our own cluster
# with trust auth on a loopback port of its own, as the postgres user (never as root).
PORT="${CTRIP_TEST_PG_PORT:-54329}"
DIR="${CTRIP_TEST_PG_DIR:-/var/tmp/ctrip-test-pg}"
BIN="$(pg_bindir)"
URL="postgres://postgres@127.0.0.1:$PORT/postgres"
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}
if ! psql "$URL" -Atqc 'SELECT 1' >/dev/null 2>&1; then
  log "starting a test PostgreSQL cluster in $DIR on port $PORT"
  mkdir -p "$DIR"
  [ "$(id -u)" -eq 0 ] && chown -R postgres: "$DIR"
  if [ ! -f "$DIR/data/PG_VERSION" ]; then
    as_pg "$BIN/initdb" -D "$DIR/data" -U postgres -A trust -E UTF8 --no-sync >&2
  fi
  as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
    -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" start >&2
fi
echo "CTRIP_TEST_DATABASE_URL=$URL"
