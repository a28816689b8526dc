#!/usr/bin/env bash
# `make dev`: the local control plane, the CRDs, the operator, and an example
# pipeline a newcomer can watch progress. The operator keeps running in the
# background afterwards (log: .cluster/logs/operator.log); `make dev-down`
# stops it, `make cluster-down` stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export KUBECONFIG="$ROOT/.cluster/kubeconfig"

python3 hack/cluster/cluster.py up >/dev/null
BIN=$(python3 hack/cluster/cluster.py bin | grep kubernetes-)
export PATH="$BIN:$PATH"
echo "==> control plane up; installing the CRDs"
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
kubectl wait --for=condition=Established crd/pipelines.sluice.dev crd/tasks.sluice.dev >/dev/null

PIDFILE="$ROOT/.cluster/pids/operator.pid"
if [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  echo "==> operator already running (pid $(cat "$PIDFILE"))"
else
  echo "==> starting the operator (log: .cluster/logs/operator.log, metrics: http://127.0.0.1:9090/metrics)"
  mkdir -p "$ROOT/.cluster/logs" "$ROOT/.cluster/pids"
  nohup .venv/bin/sluice run --metrics-address 127.0.0.1 ${SLUICE_DEV_ARGS:---admission local} \
    >>"$ROOT/.cluster/logs/operator.log" 2>&1 &
  echo $! >"$PIDFILE"
fi

echo "==> applying examples/ml-lifecycle.yaml"
kubectl apply -f examples/ml-lifecycle.yaml
if kubectl get pipeline churn-model -o jsonpath='{.status.phase}' 2>/dev/null | grep -qE 'Succeeded|Degraded|Failed'; then
  echo "==> churn-model has run already; starting a fresh run"
  kubectl annotate pipeline churn-model --overwrite "sluice.dev/rerun=$(date +%s)" >/dev/null
fi
echo "==> watching it (Ctrl-C stops watching, not the operator)"
last=""
for _ in $(seq 1 240); do
  line=$(kubectl get pipeline churn-model --no-headers 2>/dev/null || true)
  if [[ "$line" != "$last" ]]; then echo "$line"; last=$line; fi
  case "$line" in *Succeeded*|*Degraded*|*Failed*) break ;; esac
  sleep 0.5
done
echo
kubectl get jobs -l sluice.dev/pipeline=churn-model
cat <<MSG

Try next:
  export KUBECONFIG=$KUBECONFIG PATH=$BIN:\$PATH
  kubectl get pipelines            # or: kubectl get pl
  kubectl describe pipeline churn-model
  kubectl apply -f examples/degraded-and-recovered.yaml   # watch a failure, then fix it
  make dev-down                    # stop the operator (make cluster-down: everything)
MSG
