"""Throughput and cost per task: many pipelines applied at once.

--pipelines chains of --tasks tasks (default 500 x 10) are applied at once to
a fresh operator; the benchmark marks every Job complete as soon as it sees it
(zero-length tasks: what is measured is the operator's own pace). Reported:
tasks completed per second and the time until every pipeline is Succeeded;
the API requests the operator made per task, counted by the API server for
the operator's own identity (its FlowSchema); the operator's CPU seconds per
task (utime + stime from /proc).

    python bench/throughput.py [--pipelines 500] [--tasks 10] [--out FILE]
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
    operator_requests,
    request_breakdown,
    run_id,
    write_result,
)
from handoff import warm_up


async def main(a: argparse.Namespace) -> dict[str, Any]:
    cluster = BenchCluster.from_env()
    cluster.up()
    rid = run_id()
    api = Api(cluster.kubeconfig)
    ns = f"bench-{rid}-tput"
    n_tasks = a.pipelines * a.tasks
    try:
        await api.create_namespace(ns)
        op = Operator(cluster, [ns], log_dir() / f"throughput-operator-{rid}.log").start()
        try:
            await warm_up(api, ns)
            jobs = await JobTracker(api, ns).start()
            pls = await PipelineTracker(api, ns).start()
            await asyncio.sleep(1)  # let the warm-up's trailing requests land before counting
            m0 = await api.metrics()
            cpu0 = op.cpu_seconds()
            t0 = time.perf_counter()
            log(f"applying {a.pipelines} pipelines of {a.tasks} tasks")
            bodies = [chain_pipeline(f"p{i:04d}", a.tasks) for i in range(a.pipelines)]
            await apply_pipelines(api, ns, bodies)
            applied = time.perf_counter() - t0

            def progress(done: int) -> None:
                log(f"  {done}/{a.pipelines} pipelines done, {len(jobs.complete_acked)} tasks")

            t_done = await pls.wait_succeeded(a.pipelines, a.timeout, progress)
            elapsed = t_done - t0
            await asyncio.sleep(a.settle)  # the requests that follow the last status write
            cpu1 = op.cpu_seconds()
            m1 = await api.metrics()
            await jobs.stop()
            await pls.stop()
            mem = op.memory_mib()
        finally:
            op.stop()
        requests = operator_requests(m1) - operator_requests(m0)
        before, after = request_breakdown(m0), request_breakdown(m1)
        delta = {k: int(after[k] - before.get(k, 0)) for k in after if after[k] > before.get(k, 0)}
        res = {
            "tasks_per_s": round(n_tasks / elapsed, 1),
            "all_done_s": round(elapsed, 2),
            "apply_s": round(applied, 2),
            "api_requests_per_task": round(requests / n_tasks, 2),
            "api_requests_operator": int(requests),
            "cpu_s_per_task": round((cpu1 - cpu0) / n_tasks, 5),
            "cpu_s_operator": round(cpu1 - cpu0, 2),
            "throughput_rss_mib_end": round(mem.get("VmRSS", 0), 1),
            "throughput_sizes": {"pipelines": a.pipelines, "tasks": a.tasks},
            # All clients (the benchmark's own calls and the controllers' included).
            "api_requests_by_verb_all_clients": dict(sorted(delta.items())),
        }
        if a.cleanup:
            await api.delete_namespace(ns)
    finally:
        await api.close()
    return res


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pipelines", type=int, default=500)
    p.add_argument("--tasks", type=int, default=10, help="tasks per pipeline (a chain)")
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--cleanup", action="store_true", help="delete the namespace afterwards")
    p.add_argument("--out", type=Path, default=OUT / "throughput.json")
    a = p.parse_args()
    res = asyncio.run(main(a))
    write_result(a.out, res)
    log(
        f"{res['tasks_per_s']} tasks/s, all done in {res['all_done_s']}s; "
        f"{res['api_requests_per_task']} API requests and {res['cpu_s_per_task']} CPU s per task"
    )


if __name__ == "__main__":
    cli()
