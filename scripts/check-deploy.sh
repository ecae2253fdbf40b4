#!/usr/bin/env bash
# Checks the deployment files: the Kubernetes manifests against the Kubernetes API schemas
# (PyPI kubernetes-validate, in .tools/venv), and the gateway configuration they carry
# with `ctrip config check` (the secret files replaced by throw-away ones).
#   scripts/check-deploy.sh        (scripts/test.sh runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "check-deploy: $*" >&2; }

KV=.tools/venv/bin/kubernetes-validate
if [ ! -x "$KV" ]; then
  log "installing kubernetes-validate into .tools/venv (PyPI)"
  [ -x .tools/venv/bin/pip ] || python3 -m venv .tools/venv >&2
  .tools/venv/bin/pip install -q "kubernetes-validate>=1.31,<2" >&2
fi
"$KV" --strict deploy/kubernetes/*.yaml

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
.tools/venv/bin/python - "$WORK" <<'PY'
import sys, yaml
work = sys.argv[1]
for doc in yaml.safe_load_all(open("deploy/kubernetes/configmap.yaml")):
    if doc and doc.get("kind") == "ConfigMap":
        text = doc["data"]["k8s.toml"].replace("/run/secrets/ctrip", work)
        open(f"{work}/k8s.toml", "w").write(text)
PY
printf 'postgres://ctrip:pw@127.0.0.1:5432/ctrip' > "$WORK/database-url"
printf 'test test test test test test test test test test test junk' > "$WORK/mnemonic"
printf 'a-throw-away-admin-token-0123456789' > "$WORK/admin-token"
cargo run --quiet --bin ctrip -- config check --config "$WORK/k8s.toml" >/dev/null
log "manifests valid; their gateway configuration loads"
