#!/usr/bin/env bash
# Runs every test: unit tests, real-PostgreSQL + real-anvil integration tests, and the
# Prometheus alert-rule tests. Installs whatever is missing first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

eval "export $(scripts/setup.sh | tail -n 1)"
echo "test database server: ${CTRIP_TEST_DATABASE_URL%%/postgres}" >&2

# Databases left behind by earlier runs (each test creates its own).
psql "$CTRIP_TEST_DATABASE_URL" -Atqc \
  "SELECT format('DROP DATABASE IF EXISTS %I;', datname) FROM pg_database WHERE datname LIKE 'ctrip_test_%'" \
  | psql "$CTRIP_TEST_DATABASE_URL" -q >/dev/null 2>&1 || true

for rules_test in config/prometheus/alerts_test.yml config/prometheus/slo_test.yml; do
  promtool test rules "$rules_test"
done

# The Kubernetes manifests against the API schemas, and the configuration they carry.
scripts/check-deploy.sh

# The API fuzzed from its own OpenAPI document (bounded in time; CTRIP_SCHEMATHESIS=0 skips).
if [ "${CTRIP_SCHEMATHESIS:-1}" = "1" ]; then
  scripts/schemathesis.sh
fi

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
  # The sweeping and chain tests again, unchanged, with every signature from a separate
  # `ctrip signer` process and a gateway that holds no key.
  echo "sweeping again with a separate signer (CTRIP_TEST_SIGNER=process)" >&2
  CTRIP_TEST_SIGNER=process cargo nextest run --workspace --no-fail-fast \
    -E 'binary(api) & (test(sweeping::) | test(chain::))' "$@"
else
  cargo test --workspace --no-fail-fast "$@"
  CTRIP_TEST_SIGNER=process cargo test --test api --no-fail-fast "$@" -- sweeping:: chain::
fi
