#!/usr/bin/env bash
# `make dev`: the local control plane, the CRDs, the operator, and an example
# pipeline a newcomer can watch progress. The operator keeps running in the
# background afterwards (log: .cluster/logs/operator.log); `make dev-down`
# stops it, `make cluster-down` stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export KUBECONFIG="$ROOT/.cluster/kubeconfig"

# The first time, this compiles the control plane (minutes): show its progress.
echo "==> building the local control plane if needed (a cold build takes several minutes)"
python3 hack/cluster/cluster.py build
echo "==> starting the local control plane"
python3 hack/cluster/cluster.py up >/dev/null
BIN=$(python3 hack/cluster/cluster.py bin | grep kubernetes-)
# kubectl matching the server, and the `kubectl sluice` plugin (kubectl-sluice) after it.
export PATH="$BIN:$PATH:$ROOT/.venv/bin"
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
echo "==> watching it: kubectl sluice get -w churn-model (Ctrl-C stops watching, not the operator)"
kubectl sluice get -w churn-model
echo
echo "==> what its steps printed: kubectl sluice logs churn-model"
kubectl sluice logs churn-model
cat <<MSG

Try next:
  export KUBECONFIG=$KUBECONFIG PATH=$BIN:\$PATH:$ROOT/.venv/bin
  kubectl sluice list                               # or: kubectl get pl
  kubectl sluice get churn-model                    # the DAG as a tree
  kubectl sluice logs churn-model train             # one step's log (-f follows it)
  kubectl apply -f examples/degraded-and-recovered.yaml
  kubectl sluice get -w nightly                     # a failure, retries, then Degraded
  kubectl sluice logs nightly --failed
  kubectl sluice retry nightly                      # or fix the Task: it resumes by itself
  kubectl sluice graph churn-model --format mermaid
  make dev-down                    # stop the operator (make cluster-down: everything)
MSG
