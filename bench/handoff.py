"""Hand-off latency: from an upstream Job's Complete condition being written to
the downstream Job existing, for Sluice and for the floor (a minimal client).

Scenarios, each on the operator and then on the floor:
  one   -- one chain of --length tasks (default 50)
  many  -- --chains chains of --chains-length tasks at once (default 200 x 10)

The benchmark itself marks each Job complete --task-seconds after it appears
(patching status as the Job controller would; the bench cluster runs no Job
controller). A sample is: the moment the benchmark's watch sees Job k+1 ADDED
minus the moment the PATCH that wrote Job k's Complete condition was sent (its
body written to the socket; the conservative end) -- both on the benchmark's clock.

    python bench/handoff.py [--length 50] [--chains 200] [--chains-length 10] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import (
    OUT,
    Api,
    BenchCluster,
    Floor,
    JobTracker,
    Operator,
    PipelineTracker,
    apply_pipelines,
    chain_pipeline,
    floor_job,
    gather_limited,
    log,
    log_dir,
    run_id,
    summary_ms,
    write_result,
)


@dataclass
class Scenario:
    """What one scenario measured, all on the benchmark's clock."""

    handoffs: list[float]
    seen: list[float]
    """Per hand-off: the Complete PATCH sent -> the benchmark's watch seeing it. The
    API server's part, before the operator (or the floor) can act at all."""
    after_seen: list[float]
    """Per hand-off: the Complete seen -> the next Job seen: the controller's part
    (its reaction and its create) plus the create's delivery."""
    write_rtt: list[float]
    """Round trips of the benchmark's Complete PATCHes (sent -> acknowledged)."""
    status_lag: list[float] = field(default_factory=list)
    """Per pipeline: the PATCH completing its last Job -> the benchmark's watch
    seeing it Succeeded: how far the status trails the work (operator only)."""

    @classmethod
    def of(cls, jobs: JobTracker, status_lag: list[float] | None = None) -> Scenario:
        seen, after = jobs.handoff_parts()
        return cls(jobs.handoffs, seen, after, jobs.write_rtt, status_lag or [])


async def warm_up(api: Api, ns: str) -> None:
    """A 2-step pipeline through the operator: its watches in `ns` are up, its code is warm."""
    jobs = await JobTracker(api, ns).start()
    pls = await PipelineTracker(api, ns).start()
    await apply_pipelines(api, ns, [chain_pipeline("warmup", 2)])
    await pls.wait_succeeded(1, timeout=60)
    await jobs.stop()
    await pls.stop()


async def run_operator(
    api: Api, ns: str, chains: int, length: int, task_s: float, timeout: float
) -> Scenario:
    jobs = await JobTracker(api, ns, duration=task_s).start()
    pls = await PipelineTracker(api, ns).start()
    await apply_pipelines(api, ns, [chain_pipeline(f"c{i:03d}", length) for i in range(chains)])
    await jobs.wait_completed(chains * length, timeout, what=f"operator {chains}x{length}")
    await pls.wait_succeeded(chains, timeout)
    await jobs.stop()
    await pls.stop()
    assert len(jobs.handoffs) == chains * (length - 1), (len(jobs.handoffs), chains, length)
    lag = [
        seen - jobs.complete_sent[(ns, name, length - 1)] for name, seen in pls.succeeded.items()
    ]
    return Scenario.of(jobs, lag)


async def run_floor(
    api: Api, ns: str, chains: int, length: int, task_s: float, timeout: float, name: str = "c"
) -> Scenario:
    jobs = await JobTracker(api, ns, duration=task_s).start()
    path = f"/apis/batch/v1/namespaces/{ns}/jobs"
    await gather_limited(
        (api.call("POST", path, floor_job(ns, f"{name}{i:03d}", 0, length)) for i in range(chains)),
        32,
    )
    await jobs.wait_completed(chains * length, timeout, what=f"floor {chains}x{length}")
    await jobs.stop()
    assert len(jobs.handoffs) == chains * (length - 1), (len(jobs.handoffs), chains, length)
    return Scenario.of(jobs)


def _parts(prefix: str, many: Scenario) -> dict[str, float]:
    """The many-chains hand-off cut in two where a watcher sees the completion."""
    seen, after = summary_ms(many.seen), summary_ms(many.after_seen)
    return {
        f"{prefix}seen_p50_ms_200": seen["p50"],
        f"{prefix}seen_p99_ms_200": seen["p99"],
        f"{prefix}after_seen_p50_ms_200": after["p50"],
        f"{prefix}after_seen_p99_ms_200": after["p99"],
    }


async def main(a: argparse.Namespace) -> dict[str, Any]:
    cluster = BenchCluster.from_env()
    cluster.up()
    rid = run_id()
    api = Api(cluster.kubeconfig)
    floor_api = Api(cluster.kubeconfig)
    timeout = a.timeout
    res: dict[str, Any] = {}
    try:
        # ---- the operator
        prefix = f"bench-{rid}-"
        one, many = f"{prefix}one", f"{prefix}many"
        for ns in (one, many):
            await api.create_namespace(ns)
        op = Operator(cluster, [one, many], log_dir() / f"handoff-operator-{rid}.log").start()
        try:
            for ns in (one, many):
                await warm_up(api, ns)
            log(f"operator: one chain of {a.length}")
            s_one = await run_operator(api, one, 1, a.length, a.task_seconds, timeout)
            log(f"operator: {a.chains} chains of {a.chains_length} at once")
            s_many = await run_operator(
                api, many, a.chains, a.chains_length, a.task_seconds, timeout
            )
            op_metrics = op.metrics()
        finally:
            op.stop()
        # ---- the floor, in the same run, on the same cluster
        floor = Floor(cluster.kubeconfig, log_dir() / f"handoff-floor-{rid}.log").start()
        try:
            f_one_ns, f_many_ns = f"bfloor-{rid}-one", f"bfloor-{rid}-many"
            for ns in (f_one_ns, f_many_ns):
                await floor_api.create_namespace(ns)
            for ns in (f_one_ns, f_many_ns):
                await run_floor(floor_api, ns, 1, 2, 0.0, timeout, name="warmup")
            log(f"floor: one chain of {a.length}")
            f_one = await run_floor(floor_api, f_one_ns, 1, a.length, a.task_seconds, timeout)
            log(f"floor: {a.chains} chains of {a.chains_length} at once")
            f_many = await run_floor(
                floor_api, f_many_ns, a.chains, a.chains_length, a.task_seconds, timeout
            )
        finally:
            floor.stop()
        o1, o2, f1, f2 = (summary_ms(x.handoffs) for x in (s_one, s_many, f_one, f_many))
        rtt = [t for x in (s_one, s_many, f_one, f_many) for t in x.write_rtt]
        res = {
            "handoff_p50_ms": o1["p50"],
            "handoff_p95_ms": o1["p95"],
            "handoff_p99_ms": o1["p99"],
            "handoff_max_ms": o1["max"],
            "handoff_p50_ms_200": o2["p50"],
            "handoff_p95_ms_200": o2["p95"],
            "handoff_p99_ms_200": o2["p99"],
            "floor_p50_ms": f1["p50"],
            "floor_p95_ms": f1["p95"],
            "floor_p99_ms": f1["p99"],
            "floor_p50_ms_200": f2["p50"],
            "floor_p99_ms_200": f2["p99"],
            "floor_ratio_p50": round(o1["p50"] / f1["p50"], 2),
            "floor_ratio_p99_200": round(o2["p99"] / f2["p99"], 2),
            "complete_write_rtt_p50_ms": summary_ms(rtt)["p50"],
            "status_lag_ms": summary_ms(s_one.status_lag)["p50"],
            "status_lag_p50_ms_200": summary_ms(s_many.status_lag)["p50"],
            "status_lag_p99_ms_200": summary_ms(s_many.status_lag)["p99"],
            **_parts("", s_many),
            **_parts("floor_", f_many),
            "handoff_sizes": {
                "one": {"chains": 1, "length": a.length, "samples": o1["n"]},
                "many": {"chains": a.chains, "length": a.chains_length, "samples": o2["n"]},
                "task_seconds": a.task_seconds,
            },
            "operator_handoff_histogram": [
                ln
                for ln in op_metrics.splitlines()
                if ln.startswith("sluice_handoff_latency_seconds_")
            ],
            "operator_job_create_histogram": [
                ln for ln in op_metrics.splitlines() if ln.startswith("sluice_job_create_seconds_")
            ],
        }
        for ns in (f"{prefix}one", f"{prefix}many", f"bfloor-{rid}-one", f"bfloor-{rid}-many"):
            if a.cleanup:
                await api.delete_namespace(ns)
    finally:
        await api.close()
        await floor_api.close()
    return res


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--length", type=int, default=50, help="tasks in the single chain")
    p.add_argument("--chains", type=int, default=200, help="chains run at once")
    p.add_argument("--chains-length", type=int, default=10, help="tasks per concurrent chain")
    p.add_argument(
        "--task-seconds",
        type=float,
        default=0.25,
        help="how long after a Job appears the benchmark marks it complete",
    )
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--cleanup", action="store_true", help="delete the namespaces afterwards")
    p.add_argument("--out", type=Path, default=OUT / "handoff.json")
    a = p.parse_args()
    started = time.monotonic()
    res = asyncio.run(main(a))
    res["handoff_bench_seconds"] = round(time.monotonic() - started, 1)
    # The benchmark's own CPU (it shares the cores with what it measures).
    own = resource.getrusage(resource.RUSAGE_SELF)
    res["handoff_bench_cpu_s"] = round(own.ru_utime + own.ru_stime, 1)
    write_result(a.out, res)
    log(
        f"hand-off p50/p95/p99 {res['handoff_p50_ms']}/{res['handoff_p95_ms']}/"
        f"{res['handoff_p99_ms']} ms; 200 at once p99 {res['handoff_p99_ms_200']} ms; "
        f"floor p50 {res['floor_p50_ms']} ms; ratio {res['floor_ratio_p50']}"
    )


if __name__ == "__main__":
    cli()
