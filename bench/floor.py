"""The floor: the least any client can do to hand off from one Job to the next.

It watches the floor's Jobs (one label-selected, cluster-wide watch) and, when
one is seen Complete, creates the next Job of its chain: no reconcile, no
status, no Events, no bookkeeping. Operator latency is reported as a ratio to
this. Run by the benchmarks; prints "ready" once its watch is in place.

    python bench/floor.py KUBECONFIG
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from benchlib import (
    ANN_LENGTH,
    ANN_PIPELINE,
    ANN_TASK,
    FLOOR_MANAGED_BY,
    Api,
    ApiError,
    floor_job,
    is_complete,
)


async def main(kubeconfig: Path) -> None:
    api = Api(kubeconfig, connections=32)  # as many as the operator's pool
    path = "/apis/batch/v1/jobs"
    selector = f"app.kubernetes.io/managed-by={FLOOR_MANAGED_BY}"
    rv = await api.resource_version(path, selector)
    print("ready", flush=True)
    started: set[tuple[str, str, int]] = set()
    tasks: set[asyncio.Task[None]] = set()

    async def create(ns: str, body: dict[str, object]) -> None:
        try:
            await api.call("POST", f"/apis/batch/v1/namespaces/{ns}/jobs", body)
        except ApiError as e:
            if e.status != 409:
                print(f"create failed: {e}", file=sys.stderr, flush=True)

    async for _, ev in api.watch(path, rv, selector):
        job = ev["object"]
        if ev["type"] != "MODIFIED" or not is_complete(job):
            continue
        meta = job["metadata"]
        ann = meta["annotations"]
        nxt = int(ann[ANN_TASK][1:]) + 1
        length = int(ann[ANN_LENGTH])
        key = (meta["namespace"], ann[ANN_PIPELINE], nxt)
        if nxt >= length or key in started:
            continue
        started.add(key)
        t = asyncio.create_task(create(key[0], floor_job(key[0], key[1], nxt, length)))
        tasks.add(t)
        t.add_done_callback(tasks.discard)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
