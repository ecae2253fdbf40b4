#!/usr/bin/env bash
# API load benchmark against a real gateway and PostgreSQL (see README, Benchmarks).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "export $(CTRIP_SETUP_PROMTOOL=0 scripts/setup.sh | tail -n 1)"
cargo bench --bench api_load
