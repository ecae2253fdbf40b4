#!/usr/bin/env bash
# Starts Prometheus and Alertmanager (Debian packages, installed when missing) on loopback
# against a local gateway, with the project's own rule files, and prints their URLs:
#   scripts/dev.sh            # in one terminal: the gateway on http://127.0.0.1:8080
#   scripts/observe.sh        # in another: Prometheus on :9090, Alertmanager on :9093
# Options (environment): GATEWAY=127.0.0.1:8080 PROM_PORT=9090 AM_PORT=9093.
# Ctrl-C stops both. Nothing is kept: their data lives in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
GATEWAY="${GATEWAY:-127.0.0.1:8080}"
PROM_PORT="${PROM_PORT:-9090}"
AM_PORT="${AM_PORT:-9093}"

if [ ! -x /usr/bin/prometheus ] || [ ! -x /usr/bin/prometheus-alertmanager ]; then
  scripts/setup.sh >/dev/null
fi

WORK="$(mktemp -d -t ctrip-observe.XXXXXX)"
cleanup() { kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM

cat > "$WORK/prometheus.yml" <<YAML
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files:
  - $PWD/config/prometheus/alerts.yml
  - $PWD/config/prometheus/slo.yml
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:$AM_PORT"]
scrape_configs:
  - job_name: gateway
    static_configs:
      - targets: ["$GATEWAY"]
YAML

/usr/bin/prometheus-alertmanager \
  --config.file="$PWD/config/alertmanager/alertmanager.yml" \
  --storage.path="$WORK/am" --web.listen-address="127.0.0.1:$AM_PORT" \
  --cluster.listen-address= >"$WORK/alertmanager.log" 2>&1 &
/usr/bin/prometheus \
  --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK/prometheus.log" 2>&1 &

for _ in $(seq 1 60); do
  if curl -fsS "http://127.0.0.1:$PROM_PORT/-/ready" >/dev/null 2>&1; then break; fi
  sleep 0.5
done
echo "gateway scraped:  http://$GATEWAY/metrics"
echo "Prometheus:       http://127.0.0.1:$PROM_PORT   (alerts: /alerts, rules: /rules, targets: /targets)"
echo "Alertmanager:     http://127.0.0.1:$AM_PORT"
echo "dashboard:        config/grafana/ctrip.json (import into Grafana with this Prometheus as its data source)"
echo "logs:             $WORK/{prometheus,alertmanager}.log   (Ctrl-C stops both)"
wait
