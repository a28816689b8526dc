"""A soak of stuck steps (issue 18): many pipelines at once on the full simulated cluster
(the real Job controller, the real scheduler, kwok pods), a mix of normal, stuck and
failing steps, run with a short --stuck-after; then held a while to see that nothing
drifts. Not part of `make bench` (run it on its own).

The mix of --pipelines (default 100), in this order of names:
  normal   chains of 2 steps whose pods run and succeed;
  timeout  a step kept waiting (ErrImagePull) with pendingTimeoutSeconds and one retry:
           it fails over, then fails for good (Degraded);
  stuck    a step kept waiting (ImagePullBackOff) or Unschedulable, no pendingTimeout:
           Running for ever, with the reason named;
  failing  a step whose pod fails (exit code 3), one retry, then Degraded.

Checked at the end: every step left Running either has a running pod or is marked
stuck with a named reason; no step has more than one active Job, and no attempt two
Jobs; the operator's RSS over the hold. Reported: the times, the operator's API
requests (its FlowSchema) in the run and per second in the hold, RSS samples.

    python bench/stuck_soak.py [--pipelines 100] [--hold 60] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchlib import (
    GROUP,
    OUT,
    VERSION,
    Api,
    BenchCluster,
    Operator,
    apply_pipelines,
    chain_pipeline,
    log,
    log_dir,
    operator_requests,
    run_id,
    write_result,
)

STUCK_AFTER = 3
WAITING = "sim.sluice.dev/waiting-reason"


def _pipeline(name: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Pipeline",
        "metadata": {"name": name},
        "spec": {"tasks": steps},
    }


def _step(name: str, template: dict[str, Any], **extra: Any) -> dict[str, Any]:
    task = {"image": "busybox:1.36", "command": ["true"], "podTemplate": template}
    return {"name": name, "task": task, **extra}


def mix(n: int) -> dict[str, dict[str, Any]]:
    """Pipeline name -> body; the kind is the name's prefix."""
    kinds = ["normal"] * (n // 2) + ["timeout", "stuck", "failing"] * n
    out: dict[str, dict[str, Any]] = {}
    for i, kind in enumerate(kinds[:n]):
        name = f"{kind}-{i:03d}"
        retry = {"limit": 1, "backoff": {"initialSeconds": 1}}
        if kind == "normal":
            out[name] = chain_pipeline(name, 2, "200ms")
            out[name]["metadata"]["name"] = name
        elif kind == "timeout":
            template = {"metadata": {"annotations": {WAITING: "ErrImagePull"}}}
            out[name] = _pipeline(
                name, [_step("a", template, pendingTimeoutSeconds=8, retry=retry)]
            )
        elif kind == "stuck":
            template = (
                {"metadata": {"annotations": {WAITING: "ImagePullBackOff"}}}
                if i % 2
                else {"spec": {"nodeSelector": {"no-such": "node"}}}
            )
            out[name] = _pipeline(name, [_step("a", template)])
        else:
            template = {
                "metadata": {
                    "labels": {"sim.sluice.dev/outcome": "fail"},
                    "annotations": {"sim.sluice.dev/exit-code": "3"},
                }
            }
            out[name] = _pipeline(name, [_step("a", template, retry=retry)])
    return out


def settled(kind: str, st: dict[str, Any]) -> bool:
    tasks = st.get("tasks") or []
    if kind == "normal":
        return st.get("phase") == "Succeeded"
    if kind in ("timeout", "failing"):
        return st.get("phase") == "Degraded"
    return bool(tasks) and all(t.get("stuckAt") and t.get("reason") for t in tasks)


async def lists(api: Api, ns: str) -> tuple[list[Any], list[Any], list[Any]]:
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/pipelines"
    sel = {"labelSelector": "app.kubernetes.io/managed-by=sluice"}
    pls = (await api.call("GET", base))["items"]
    jobs = (await api.call("GET", f"/apis/batch/v1/namespaces/{ns}/jobs", params=sel))["items"]
    pods = (await api.call("GET", f"/api/v1/namespaces/{ns}/pods"))["items"]
    return pls, jobs, pods


def check(pls: list[Any], jobs: list[Any], pods: list[Any]) -> dict[str, Any]:
    """The invariants: what is wrong (empty lists: nothing)."""
    running_pods: Counter[tuple[str | None, str | None]] = Counter()
    for p in pods:
        if (p.get("status") or {}).get("phase") == "Running":
            labels = p["metadata"].get("labels") or {}
            running_pods[(labels.get("sluice.dev/pipeline"), labels.get("sluice.dev/task"))] += 1
    unexplained = []
    for pl in pls:
        name = pl["metadata"]["name"]
        for t in (pl.get("status") or {}).get("tasks") or []:
            if t.get("phase") != "Running":
                continue
            if not running_pods[(name, t["name"])] and not (t.get("stuckAt") and t.get("reason")):
                unexplained.append(f"{name}/{t['name']}")
    active: Counter[tuple[str, str]] = Counter()
    attempts: Counter[tuple[str, str, str, str]] = Counter()
    for j in jobs:
        labels = j["metadata"]["labels"]
        key = (labels["sluice.dev/pipeline"], labels["sluice.dev/task"])
        attempts[(*key, labels["sluice.dev/run"], labels["sluice.dev/attempt"])] += 1
        status = j.get("status") or {}
        done = any(
            c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        if not done and not j["metadata"].get("deletionTimestamp"):
            active[key] += 1
    return {
        "running_without_pod_or_reason": unexplained,
        "steps_with_two_active_jobs": [f"{p}/{t}" for (p, t), n in active.items() if n > 1],
        "attempts_with_two_jobs": [k for k, n in attempts.items() if n > 1],
    }


async def main(a: argparse.Namespace) -> dict[str, Any]:
    cluster = BenchCluster.from_env(full=True)
    cluster.up()
    rid = run_id()
    api = Api(cluster.kubeconfig)
    ns = f"stuck-{rid}"
    bodies = mix(a.pipelines)
    rss: list[tuple[float, float]] = []
    try:
        await api.create_namespace(ns)
        op = Operator(
            cluster,
            [ns],
            log_dir() / f"stuck-soak-operator-{rid}.log",
            extra_args=["--stuck-after", str(STUCK_AFTER)],
        ).start()
        try:
            await api.prewarm()
            req0 = operator_requests(await api.metrics())
            t0 = time.monotonic()
            await apply_pipelines(api, ns, list(bodies.values()))
            while True:
                pls, _, _ = await lists(api, ns)
                done = [
                    p
                    for p in pls
                    if settled(p["metadata"]["name"].split("-")[0], p.get("status") or {})
                ]
                if len(done) == len(bodies):
                    break
                if time.monotonic() - t0 > a.timeout:
                    raise SystemExit(f"only {len(done)} of {len(bodies)} settled in {a.timeout}s")
                await asyncio.sleep(1)
            settle_s = time.monotonic() - t0
            req1 = operator_requests(await api.metrics())
            log(f"stuck soak: {len(bodies)} pipelines settled in {settle_s:.1f}s")
            h0 = time.monotonic()
            while time.monotonic() - h0 < a.hold:
                rss.append((round(time.monotonic() - h0, 1), round(op.memory_mib()["VmRSS"], 1)))
                await asyncio.sleep(5)
            rss.append((round(time.monotonic() - h0, 1), round(op.memory_mib()["VmRSS"], 1)))
            req2 = operator_requests(await api.metrics())
            hold_s = time.monotonic() - h0
            pls, jobs, pods = await lists(api, ns)
            problems = check(pls, jobs, pods)
            reasons = Counter(
                t.get("reason")
                for p in pls
                for t in (p.get("status") or {}).get("tasks") or []
                if t.get("stuckAt")
            )
            peak = op.memory_mib()["VmHWM"]
        finally:
            op.stop()
        if a.cleanup:
            await api.delete_namespace(ns)
    finally:
        await api.close()
        if not a.keep_cluster:
            cluster.down()
    stuck = sum(1 for n in bodies if n.startswith("stuck"))
    return {
        "stuck_soak_pipelines": len(bodies),
        "stuck_soak_kinds": dict(Counter(n.split("-")[0] for n in bodies)),
        "stuck_soak_settle_s": round(settle_s, 1),
        "stuck_soak_operator_requests_to_settle": int(req1 - req0),
        "stuck_soak_hold_s": round(hold_s, 1),
        "stuck_soak_hold_requests_per_s": round((req2 - req1) / hold_s, 2),
        "stuck_soak_hold_requests_per_stuck_step_per_s": round((req2 - req1) / hold_s / stuck, 3),
        "stuck_soak_reasons": dict(reasons),
        "stuck_soak_rss_mib": rss,
        "stuck_soak_rss_peak_mib": round(peak, 1),
        **{f"stuck_soak_{k}": v for k, v in problems.items()},
    }


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pipelines", type=int, default=100)
    p.add_argument("--hold", type=float, default=60, help="seconds held after all settled")
    p.add_argument("--timeout", type=float, default=180, help="for all to settle")
    p.add_argument("--cleanup", action="store_true", help="delete the namespace afterwards")
    p.add_argument("--keep-cluster", action="store_true", help="leave the cluster running")
    p.add_argument("--out", type=Path, default=OUT / "stuck_soak.json")
    a = p.parse_args()
    res = asyncio.run(main(a))
    write_result(a.out, res)
    bad = [k for k in res if k.startswith("stuck_soak_") and isinstance(res[k], list) and res[k]]
    log(f"stuck soak: {res}")
    if [k for k in bad if k != "stuck_soak_rss_mib"]:
        raise SystemExit(f"invariants broken: {bad}")


if __name__ == "__main__":
    cli()
