"""Memory: the operator's peak resident set while it tracks many pipelines.

A fresh operator is given --pipelines chains of --tasks tasks (default
1,000 x 10); the benchmark completes every Job as it appears, so at the end
the operator holds every Pipeline (with a status of --tasks tasks) and all
their Jobs. Reported: VmHWM (the kernel's peak RSS of the process) in MiB,
and the RSS before the pipelines were applied.

    python bench/memory.py [--pipelines 1000] [--tasks 10] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from benchlib import (
    OUT,
    Api,
    BenchCluster,
    JobTracker,
    Operator,
    PipelineTracker,
    apply_pipelines,
    chain_pipeline,
    log,
    log_dir,
    run_id,
    write_result,
)
from handoff import warm_up


async def main(a: argparse.Namespace) -> dict[str, Any]:
    cluster = BenchCluster.from_env()
    cluster.up()
    rid = run_id()
    api = Api(cluster.kubeconfig)
    ns = f"bench-{rid}-mem"
    try:
        await api.create_namespace(ns)
        op = Operator(cluster, [ns], log_dir() / f"memory-operator-{rid}.log").start()
        try:
            await warm_up(api, ns)
            base = op.memory_mib()
            jobs = await JobTracker(api, ns).start()
            pls = await PipelineTracker(api, ns).start()
            t0 = time.perf_counter()
            log(f"applying {a.pipelines} pipelines of {a.tasks} tasks")
            bodies = [chain_pipeline(f"p{i:04d}", a.tasks) for i in range(a.pipelines)]
            await apply_pipelines(api, ns, bodies)
            samples: list[float] = []

            def progress(done: int) -> None:
                rss = op.memory_mib().get("VmRSS", 0)
                samples.append(rss)
                log(f"  {done}/{a.pipelines} pipelines done; RSS {rss:.0f} MiB")

            await pls.wait_succeeded(a.pipelines, a.timeout, progress)
            elapsed = time.perf_counter() - t0
            await asyncio.sleep(a.settle)
            mem = op.memory_mib()
            await jobs.stop()
            await pls.stop()
        finally:
            op.stop()
        res = {
            "rss_mib_1000": round(mem["VmHWM"], 1),
            "rss_mib_end": round(mem["VmRSS"], 1),
            "rss_mib_idle": round(base["VmRSS"], 1),
            "memory_run_s": round(elapsed, 1),
            "memory_sizes": {"pipelines": a.pipelines, "tasks": a.tasks},
        }
        if a.cleanup:
            await api.delete_namespace(ns)
    finally:
        await api.close()
    return res


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pipelines", type=int, default=1000)
    p.add_argument("--tasks", type=int, default=10, help="tasks per pipeline (a chain)")
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("--timeout", type=float, default=1200)
    p.add_argument("--cleanup", action="store_true", help="delete the namespace afterwards")
    p.add_argument("--out", type=Path, default=OUT / "memory.json")
    a = p.parse_args()
    res = asyncio.run(main(a))
    write_result(a.out, res)
    log(f"peak RSS {res['rss_mib_1000']} MiB (idle {res['rss_mib_idle']} MiB)")


if __name__ == "__main__":
    cli()
