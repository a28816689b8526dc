"""Pod to pod, end to end: from a step's pod finishing to the next step's pod
existing, on the full simulated cluster (the real Job controller, kwok pods of a
fixed duration), for Sluice and for the pod floor (bench/podfloor.py).

Scenarios, each on the operator and then on the pod floor:
  one   -- one chain of --length tasks (default 20)
  many  -- --chains chains of --chains-length tasks at once (default 50 x 10)

Every task's pod runs --duration (kwok, `sim.sluice.dev/duration`) and
succeeds. A sample is: the moment the benchmark's pod watch sees pod k+1
ADDED minus the moment it saw pod k `Succeeded`, both on the benchmark's clock
(the API's own `creationTimestamp` and `finishedAt` have whole seconds; they
are kept as a cross-check: see bench/README.md).

    python bench/podgap.py [--length 20] [--chains 50] [--chains-length 10] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

from benchlib import (
    OUT,
    POD_FLOOR_MANAGED_BY,
    Api,
    BenchCluster,
    Floor,
    Marks,
    Operator,
    apply_pipelines,
    chain_pipeline,
    gather_limited,
    job_watch,
    log,
    log_dir,
    operator_requests,
    pipeline_watch,
    pod_floor_job,
    pod_watch,
    run_id,
    step_name,
    summary_ms,
    wait_pipelines,
    write_result,
)


async def warm_up_full(api: Api, ns: str) -> None:
    """A 2-step pipeline with pods through the operator: its watches in `ns` are up,
    its code is warm, the Job controller and kwok have run a pod there."""
    pls = await pipeline_watch(api, ns).start()
    await apply_pipelines(api, ns, [chain_pipeline("warmup", 2, "100ms")])
    await wait_pipelines(pls, ["warmup"], timeout=120)
    await pls.stop()


@dataclass
class Chains:
    """What one scenario measured: per hand-off (pod k -> pod k+1 of a chain)."""

    gaps: list[float] = field(default_factory=list)
    """Watch stamps: pod k seen Succeeded -> pod k+1 seen ADDED."""
    api_gaps: list[float] = field(default_factory=list)
    """API timestamps, whole seconds: pod k+1 creationTimestamp - pod k's main finishedAt."""
    parts: dict[str, list[float]] = field(default_factory=dict)
    """The gap cut where the benchmark's Job watch sees something in between."""
    last_pod_done: float = 0.0
    """When the last pod of all was seen Succeeded (benchmark clock)."""

    @property
    def consistent(self) -> float:
        """The fraction of samples whose watch gap agrees with the API's whole-second
        timestamps (within their truncation, plus 50 ms for the two deliveries)."""
        ok = sum(
            1 for g, a in zip(self.gaps, self.api_gaps, strict=True) if a - 1.05 < g < a + 1.05
        )
        return ok / len(self.gaps) if self.gaps else float("nan")


def measure(pods: Marks, jobs: Marks, chains: list[str], length: int) -> Chains:
    out = Chains()

    def part(name: str, value: float | None) -> None:
        if value is not None:
            out.parts.setdefault(name, []).append(value)

    for c in chains:
        for k in range(1, length):
            up, down = (c, step_name(k - 1)), (c, step_name(k))
            done, added = pods.at("succeeded", up), pods.at("added", down)
            assert done is not None and added is not None, (up, done, added)
            out.gaps.append(added - done)
            finished, created = pods.times[up].get("finished"), pods.times[down].get("created")
            if finished is not None and created is not None:
                out.api_gaps.append(created - finished)
            complete, job_added = jobs.at("complete", up), jobs.at("added", down)
            if job_added is not None:
                if complete is not None and complete <= job_added:
                    # Sluice: the Job controller's Complete, then the operator's create.
                    part("pod_to_job_complete", complete - done)
                    part("job_complete_to_next_job", job_added - complete)
                else:
                    part("pod_to_next_job", job_added - done)  # the pod floor
                part("next_job_to_next_pod", added - job_added)
    mine = set(chains)
    out.last_pod_done = max(t for k, t in pods.seen.get("succeeded", {}).items() if k[0] in mine)
    return out


async def run_operator(
    api: Api, ns: str, chains: int, length: int, duration: str, timeout: float
) -> tuple[Chains, float, float]:
    """(what it measured, apply -> last pod Succeeded, apply -> every Pipeline Succeeded)."""
    pods = await pod_watch(api, ns, "app.kubernetes.io/managed-by=sluice").start()
    jobs = await job_watch(api, ns, "app.kubernetes.io/managed-by=sluice").start()
    pls = await pipeline_watch(api, ns).start()
    names = [f"c{i:03d}" for i in range(chains)]
    t0 = time.perf_counter()
    await apply_pipelines(api, ns, [chain_pipeline(n, length, duration) for n in names])
    done = await wait_pipelines(pls, names, timeout)
    for w in (pods, jobs):
        await w.stop()
    await pls.stop()
    got = measure(pods, jobs, names, length)
    return got, got.last_pod_done - t0, done - t0


async def run_floor(
    api: Api, ns: str, chains: int, length: int, duration: str, timeout: float, name: str = "c"
) -> tuple[Chains, float]:
    selector = f"app.kubernetes.io/managed-by={POD_FLOOR_MANAGED_BY}"
    pods = await pod_watch(api, ns, selector).start()
    jobs = await job_watch(api, ns, selector).start()
    names = [f"{name}{i:03d}" for i in range(chains)]
    path = f"/apis/batch/v1/namespaces/{ns}/jobs"
    t0 = time.perf_counter()
    await gather_limited(
        (api.call("POST", path, pod_floor_job(ns, n, 0, length, duration)) for n in names), 32
    )
    # Only this scenario's pods: an earlier one's (the warm-up's) may show up again.
    keys = [(n, step_name(k)) for n in names for k in range(length)]
    await pods.wait(
        lambda: all(pods.at("succeeded", k) is not None for k in keys),
        timeout,
        f"pod floor {chains}x{length}",
    )
    for w in (pods, jobs):
        await w.stop()
    got = measure(pods, jobs, names, length)
    return got, got.last_pod_done - t0


def _figures(prefix: str, suffix: str, c: Chains) -> dict[str, Any]:
    s = summary_ms(c.gaps)
    res: dict[str, Any] = {
        f"{prefix}pod_gap_p50_ms{suffix}": s["p50"],
        f"{prefix}pod_gap_p95_ms{suffix}": s["p95"],
        f"{prefix}pod_gap_p99_ms{suffix}": s["p99"],
        f"{prefix}pod_gap_max_ms{suffix}": s["max"],
        f"{prefix}pod_gap_mean_ms{suffix}": round(fmean(c.gaps) * 1000, 2) if c.gaps else None,
        # The same gap from the API's own timestamps: whole seconds each, so only their
        # mean over many samples means something (an estimate of the true mean).
        f"{prefix}pod_gap_api_mean_ms{suffix}": (
            round(fmean(c.api_gaps) * 1000, 1) if c.api_gaps else None
        ),
        f"{prefix}pod_gap_consistent{suffix}": round(c.consistent, 3),
        f"{prefix}pod_gap_parts_p50_ms{suffix}": {
            k: summary_ms(v)["p50"] for k, v in sorted(c.parts.items())
        },
    }
    return res


async def main(a: argparse.Namespace) -> dict[str, Any]:
    cluster = BenchCluster.from_env(full=True)
    cluster.up()
    rid = run_id()
    api = Api(cluster.kubeconfig)
    floor_api = Api(cluster.kubeconfig)
    timeout = a.timeout
    res: dict[str, Any] = {}
    n_many = a.chains * a.chains_length
    try:
        # ---- the operator
        one, many = f"podgap-{rid}-one", f"podgap-{rid}-many"
        for ns in (one, many):
            await api.create_namespace(ns)
        op = Operator(cluster, [one, many], log_dir() / f"podgap-operator-{rid}.log").start()
        try:
            await api.prewarm()
            for ns in (one, many):
                await warm_up_full(api, ns)
            log(f"operator: one chain of {a.length}, pods of {a.duration}")
            s_one, pods_wall, wall = await run_operator(api, one, 1, a.length, a.duration, timeout)
            log(f"operator: {a.chains} chains of {a.chains_length} at once")
            m0, cpu0 = await api.metrics(), op.cpu_seconds()
            s_many, many_pods_wall, many_wall = await run_operator(
                api, many, a.chains, a.chains_length, a.duration, timeout
            )
            await asyncio.sleep(a.settle)  # the requests that follow the last status write
            m1, cpu1 = await api.metrics(), op.cpu_seconds()
            mem = op.memory_mib()
        finally:
            op.stop()
        # ---- the pod floor, in the same run, on the same cluster
        floor = Floor(cluster.kubeconfig, log_dir() / f"podfloor-{rid}.log", "podfloor.py")
        floor.start()
        try:
            await floor_api.prewarm()
            f_one_ns, f_many_ns = f"podfloor-{rid}-one", f"podfloor-{rid}-many"
            for ns in (f_one_ns, f_many_ns):
                await floor_api.create_namespace(ns)
            for ns in (f_one_ns, f_many_ns):
                await run_floor(floor_api, ns, 1, 2, "100ms", timeout, name="warmup")
            log(f"pod floor: one chain of {a.length}")
            f_one, f_wall = await run_floor(floor_api, f_one_ns, 1, a.length, a.duration, timeout)
            log(f"pod floor: {a.chains} chains of {a.chains_length} at once")
            f_many, f_many_wall = await run_floor(
                floor_api, f_many_ns, a.chains, a.chains_length, a.duration, timeout
            )
        finally:
            floor.stop()
        o1, f1 = summary_ms(s_one.gaps), summary_ms(f_one.gaps)
        o2, f2 = summary_ms(s_many.gaps), summary_ms(f_many.gaps)
        requests = operator_requests(m1) - operator_requests(m0)
        res = {
            **_figures("", "", s_one),
            **_figures("", "_50", s_many),
            **_figures("floor_", "", f_one),
            **_figures("floor_", "_50", f_many),
            "pod_gap_floor_ratio_p50": round(o1["p50"] / f1["p50"], 2),
            "pod_gap_floor_ratio_p50_50": round(o2["p50"] / f2["p50"], 2),
            "pod_gap_floor_ratio_p99_50": round(o2["p99"] / f2["p99"], 2),
            # A user's wall time: the Pipeline applied -> seen Succeeded.
            "chain20_wall_s": round(wall, 2),
            # The work's: applied (first Job created, for the floor) -> last pod Succeeded.
            "chain20_pods_wall_s": round(pods_wall, 2),
            "floor_chain20_wall_s": round(f_wall, 2),
            "chains50_wall_s": round(many_wall, 2),
            "chains50_pods_wall_s": round(many_pods_wall, 2),
            "floor_chains50_wall_s": round(f_many_wall, 2),
            # The operator's cost with pods and the Job controller (the 50 chains).
            "e2e_api_requests_per_task": round(requests / n_many, 2),
            "e2e_cpu_s_per_task": round((cpu1 - cpu0) / n_many, 5),
            "e2e_rss_mib_end": round(mem.get("VmRSS", 0), 1),
            "podgap_sizes": {
                "one": {"chains": 1, "length": a.length, "samples": o1["n"]},
                "many": {"chains": a.chains, "length": a.chains_length, "samples": o2["n"]},
                "pod_duration": a.duration,
            },
        }
        if a.cleanup:
            for ns in (one, many, f"podfloor-{rid}-one", f"podfloor-{rid}-many"):
                await api.delete_namespace(ns)
    finally:
        await api.close()
        await floor_api.close()
    return res


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--length", type=int, default=20, help="tasks in the single chain")
    p.add_argument("--chains", type=int, default=50, help="chains run at once")
    p.add_argument("--chains-length", type=int, default=10, help="tasks per concurrent chain")
    p.add_argument("--duration", default="250ms", help="how long each pod runs (kwok)")
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--cleanup", action="store_true", help="delete the namespaces afterwards")
    p.add_argument("--out", type=Path, default=OUT / "podgap.json")
    a = p.parse_args()
    started = time.monotonic()
    res = asyncio.run(main(a))
    res["podgap_bench_seconds"] = round(time.monotonic() - started, 1)
    write_result(a.out, res)
    log(
        f"pod gap p50/p95/p99 {res['pod_gap_p50_ms']}/{res['pod_gap_p95_ms']}/"
        f"{res['pod_gap_p99_ms']} ms; {a.chains} at once p99 {res['pod_gap_p99_ms_50']} ms; "
        f"floor p50 {res['floor_pod_gap_p50_ms']} ms; ratio {res['pod_gap_floor_ratio_p50']}; "
        f"chain wall {res['chain20_wall_s']} s"
    )


if __name__ == "__main__":
    cli()
