"""A 256-wide fan-out after a producer (issue 15), on the full simulated cluster (the real
Job controller, kwok pods of --duration). Measurement only.

One pipeline: ``list`` writes a JSON array of --width shard names as its result; ``work``
fans out over it (``matrix.params[].fromResult``), one Job per shard. Measured, on the
benchmark's clock (its watches' receive times):

  jobs ready  -- ``list``'s pod seen Succeeded -> the last of the --width Jobs seen ADDED
  requests    -- the operator's API requests (the API server's flow-control counter for
                 its identity) from the apply to the pipeline Succeeded, per combination

    python bench/fanout.py [--width 256] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from benchlib import (
    GROUP,
    OUT,
    VERSION,
    Api,
    BenchCluster,
    Marks,
    Operator,
    apply_pipelines,
    job_marks,
    log,
    log_dir,
    operator_requests,
    pipeline_watch,
    pod_marks,
    run_id,
    sim_pod_template,
    wait_pipelines,
    write_result,
)
from podgap import warm_up_full


def fanout_pipeline(name: str, width: int, duration: str) -> dict[str, Any]:
    shards = json.dumps([f"shard-{i:03d}" for i in range(width)])
    producer = sim_pod_template(duration)
    producer["metadata"]["annotations"]["sim.sluice.dev/termination-message"] = json.dumps(
        {"shards": shards}
    )
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Pipeline",
        "metadata": {"name": name},
        "spec": {
            "tasks": [
                {
                    "name": "list",
                    "task": {
                        "image": "busybox:1.36",
                        "results": [{"name": "shards"}],
                        "podTemplate": producer,
                    },
                },
                {
                    "name": "work",
                    "matrix": {
                        "params": [{"name": "shard", "fromResult": "$(tasks.list.results.shards)"}]
                    },
                    "task": {
                        "image": "busybox:1.36",
                        "params": [{"name": "shard"}],
                        "args": ["$(params.shard)"],
                        "podTemplate": sim_pod_template(duration),
                    },
                },
            ]
        },
    }


def combination_key(obj: dict[str, Any]) -> tuple[str, str] | None:
    """(task, combination) of a Sluice Job or pod; plain steps have combination ""."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    task = labels.get("sluice.dev/task")
    return (task, labels.get("sluice.dev/combination", "")) if task else None


async def main(a: argparse.Namespace) -> dict[str, Any]:
    cluster = BenchCluster.from_env(full=True)
    cluster.up()
    rid = run_id()
    api = Api(cluster.kubeconfig)
    ns = f"fanout-{rid}"
    try:
        await api.create_namespace(ns)
        op = Operator(cluster, [ns], log_dir() / f"fanout-operator-{rid}.log").start()
        try:
            await api.prewarm()
            await warm_up_full(api, ns)
            selector = "app.kubernetes.io/managed-by=sluice"
            jobs = Marks(
                api,
                f"/apis/batch/v1/namespaces/{ns}/jobs",
                job_marks,
                key=combination_key,
                selector=selector,
            )
            pods = Marks(
                api,
                f"/api/v1/namespaces/{ns}/pods",
                pod_marks,
                key=combination_key,
                selector=selector,
            )
            await jobs.start()
            await pods.start()
            pls = await pipeline_watch(api, ns).start()
            m0 = operator_requests(await api.metrics())
            started = time.monotonic()
            await apply_pipelines(api, ns, [fanout_pipeline("fan", a.width, a.duration)])
            keys = [("work", str(i)) for i in range(a.width)]
            await jobs.wait(
                lambda: all(jobs.at("added", k) is not None for k in keys),
                a.timeout,
                f"{a.width} Jobs",
            )
            await wait_pipelines(pls, ["fan"], a.timeout)
            wall = time.monotonic() - started
            await asyncio.sleep(a.settle)  # the requests that follow the last status write
            m1 = operator_requests(await api.metrics())
            produced = pods.at("succeeded", ("list", ""))
            last_job = max(t for k in keys if (t := jobs.at("added", k)) is not None)
            first_job = min(t for k in keys if (t := jobs.at("added", k)) is not None)
            assert produced is not None
            for w in (jobs, pods, pls):
                await w.stop()
        finally:
            op.stop()
        if a.cleanup:
            await api.delete_namespace(ns)
    finally:
        await api.close()
    requests = m1 - m0
    return {
        "fanout256_jobs_ready_s": round(last_job - produced, 2),
        "fanout256_first_job_s": round(first_job - produced, 3),
        "fanout256_requests_per_combination": round(requests / a.width, 2),
        "fanout256_requests": int(requests),
        "fanout256_wall_s": round(wall, 1),
        "fanout256_width": a.width,
    }


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=int, default=256, help="combinations of the fan-out")
    p.add_argument("--duration", default="250ms", help="how long each pod runs (kwok)")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--settle", type=float, default=3.0)
    p.add_argument("--cleanup", action="store_true", help="delete the namespace afterwards")
    p.add_argument("--out", type=Path, default=OUT / "fanout.json")
    a = p.parse_args()
    res = asyncio.run(main(a))
    write_result(a.out, res)
    log(
        f"fan-out of {a.width}: all Jobs {res['fanout256_jobs_ready_s']} s after the "
        f"producer's pod succeeded; {res['fanout256_requests_per_combination']} operator "
        "requests per combination"
    )


if __name__ == "__main__":
    cli()
