#!/usr/bin/env bash
# API load benchmark against a real gateway and PostgreSQL (see README, Benchmarks).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "export $(CTRIP_SETUP_PROMTOOL=0 CTRIP_SETUP_BROWSER=0 scripts/setup.sh | tail -n 1)"
# scripts/bench.sh            runs every benchmark
# scripts/bench.sh NAME       runs one (api_load, chain_backfill, webhook_delivery, sweep)
if [ $# -gt 0 ]; then
  for b in "$@"; do cargo bench --bench "$b"; done
else
  cargo bench --bench api_load
  cargo bench --bench chain_backfill
  cargo bench --bench webhook_delivery
  cargo bench --bench sweep
fi
