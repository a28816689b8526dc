"""A memory soak: pipelines created, run to the end and deleted, round after
round, on the full simulated cluster (the real Job controller, kwok pods), so
that state the operator keeps for deleted pipelines shows as RSS that only grows.

Each round applies --batch chains of --tasks tasks (pods of --duration), waits
until all are Succeeded, deletes them and waits until the Pipelines, their Jobs
and their pods are gone; then the operator's RSS (VmRSS) is sampled. Bounded:
it stops after --max-pipelines or --max-seconds, whichever comes first.

    python bench/soak.py [--batch 10] [--tasks 3] [--max-seconds 180] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import time
from pathlib import Path
from typing import Any

from benchlib import (
    GROUP,
    OUT,
    VERSION,
    Api,
    ApiError,
    BenchCluster,
    Marks,
    Operator,
    apply_pipelines,
    chain_pipeline,
    gather_limited,
    job_watch,
    log,
    log_dir,
    pipeline_watch,
    pod_watch,
    run_id,
    wait_pipelines,
    write_result,
)


def _all_gone(w: Marks, names: set[str]) -> bool:
    mine = [k for k in w.seen.get("added", {}) if k[0] in names]
    return all(k in w.gone for k in mine)


async def one_round(
    api: Api, path: str, ns: str, names: set[str], watches: tuple[Marks, Marks, Marks], a: Any
) -> None:
    """Apply the pipelines, wait until they are Succeeded, delete them, wait until
    they, their Jobs and their pods are gone."""
    pls = watches[0]
    bodies = [chain_pipeline(n, a.tasks, a.duration) for n in sorted(names)]
    await apply_pipelines(api, ns, bodies)
    await wait_pipelines(pls, names, a.timeout)

    async def delete(n: str) -> None:
        try:
            await api.call("DELETE", f"{path}/{n}")
        except ApiError as e:
            if e.status != 404:
                raise

    await gather_limited((delete(n) for n in names), 16)
    for w, what in zip(watches, ("Pipelines", "Jobs", "pods"), strict=True):
        await w.wait(functools.partial(_all_gone, w, names), a.timeout, f"{what} gone")


async def main(a: argparse.Namespace) -> dict[str, Any]:
    cluster = BenchCluster.from_env(full=True)
    cluster.up()
    rid = run_id()
    api = Api(cluster.kubeconfig)
    ns = f"soak-{rid}"
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/pipelines"
    samples: list[tuple[int, float, float]] = []  # pipelines done, seconds, VmRSS MiB
    try:
        await api.create_namespace(ns)
        op = Operator(cluster, [ns], log_dir() / f"soak-operator-{rid}.log").start()
        try:
            await api.prewarm()
            selector = "app.kubernetes.io/managed-by=sluice"
            pls = await pipeline_watch(api, ns).start()
            jobs = await job_watch(api, ns, selector).start()
            pods = await pod_watch(api, ns, selector).start()
            # A warm-up round: the operator's code and watches, and the garbage
            # collector, which on a fresh instance deletes a Pipeline's Jobs only once
            # its discovery has found the CRD (up to half a minute).
            await one_round(api, path, ns, {"warmup"}, (pls, jobs, pods), a)
            t0, cpu0 = time.monotonic(), op.cpu_seconds()
            samples.append((0, 0.0, op.memory_mib()["VmRSS"]))
            done, rnd = 0, 0
            while done < a.max_pipelines and time.monotonic() - t0 < a.max_seconds:
                names = {f"r{rnd:03d}-{j:02d}" for j in range(a.batch)}
                await one_round(api, path, ns, names, (pls, jobs, pods), a)
                done += a.batch
                rnd += 1
                samples.append((done, time.monotonic() - t0, op.memory_mib()["VmRSS"]))
                if rnd % 5 == 0:
                    log(f"  {done} pipelines created, run, deleted; RSS {samples[-1][2]:.1f} MiB")
            await asyncio.sleep(a.settle)
            samples.append((done, time.monotonic() - t0, op.memory_mib()["VmRSS"]))
            cpu = op.cpu_seconds() - cpu0
            peak = op.memory_mib()["VmHWM"]
            for w in (pls, jobs, pods):
                await w.stop()
        finally:
            op.stop()
        if a.cleanup:
            await api.delete_namespace(ns)
    finally:
        await api.close()
    start, end = samples[0][2], samples[-1][2]
    half = next(s for s in samples if s[0] >= done / 2)
    per_100 = (end - half[2]) / (done - half[0]) * 100 if done > half[0] else 0.0
    # A few points between: about ten, evenly spread over the pipelines.
    step = max(1, len(samples) // 10)
    points = (
        [*samples[::step], samples[-1]] if samples[-1] not in samples[::step] else samples[::step]
    )
    return {
        "soak_rss_start_mib": round(start, 1),
        "soak_rss_first_round_mib": round(samples[1][2], 1) if len(samples) > 1 else None,
        "soak_rss_half_mib": round(half[2], 1),
        "soak_rss_end_mib": round(end, 1),
        "soak_rss_peak_mib": round(peak, 1),
        "soak_rss_growth_mib_per_100_second_half": round(per_100, 2),
        "soak_pipelines": done,
        "soak_seconds": round(samples[-1][1], 1),
        "soak_cpu_s_per_pipeline": round(cpu / done, 4) if done else None,
        "soak_rss_points": [[n, round(t, 1), round(m, 1)] for n, t, m in points],
        "soak_sizes": {"batch": a.batch, "tasks": a.tasks, "pod_duration": a.duration},
    }


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=10, help="pipelines per round")
    p.add_argument("--tasks", type=int, default=3, help="tasks per pipeline (a chain)")
    p.add_argument("--duration", default="100ms", help="how long each pod runs (kwok)")
    p.add_argument("--max-pipelines", type=int, default=400)
    p.add_argument("--max-seconds", type=float, default=180)
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("--timeout", type=float, default=120, help="for each wait of a round")
    p.add_argument("--cleanup", action="store_true", help="delete the namespace afterwards")
    p.add_argument("--out", type=Path, default=OUT / "soak.json")
    a = p.parse_args()
    res = asyncio.run(main(a))
    write_result(a.out, res)
    log(
        f"soak: {res['soak_pipelines']} pipelines in {res['soak_seconds']} s; RSS "
        f"{res['soak_rss_start_mib']} -> {res['soak_rss_half_mib']} -> "
        f"{res['soak_rss_end_mib']} MiB"
    )


if __name__ == "__main__":
    cli()
