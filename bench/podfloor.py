"""The pod floor: the least any client can do to go from one pod finishing to the
next pod existing, through the real Job controller.

It watches the pod floor's pods (one label-selected, cluster-wide watch) and,
when one is seen ``Succeeded``, creates the next Job of its chain (the Job
controller then creates its pod): no reconcile, no status, no Events, no
bookkeeping, and no waiting for the Job's own ``Complete`` condition.
`bench/podgap.py` reports the operator's pod-to-pod gap as a ratio to this.
Run by the benchmarks; prints "ready" once its watch is in place.

    python bench/podfloor.py KUBECONFIG
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from benchlib import (
    ANN_LENGTH,
    ANN_PIPELINE,
    ANN_TASK,
    POD_FLOOR_MANAGED_BY,
    Api,
    ApiError,
    pod_floor_job,
)


async def main(kubeconfig: Path) -> None:
    api = Api(kubeconfig, connections=32)  # as many as the operator's pool
    path = "/api/v1/pods"
    selector = f"app.kubernetes.io/managed-by={POD_FLOOR_MANAGED_BY}"
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
        pod = ev["object"]
        if ev["type"] != "MODIFIED" or (pod.get("status") or {}).get("phase") != "Succeeded":
            continue
        meta = pod["metadata"]
        ann = meta["annotations"]
        nxt = int(ann[ANN_TASK][1:]) + 1
        length = int(ann[ANN_LENGTH])
        key = (meta["namespace"], ann[ANN_PIPELINE], nxt)
        if nxt >= length or key in started:
            continue
        started.add(key)
        duration = ann["sim.sluice.dev/duration"]
        body = pod_floor_job(key[0], key[1], nxt, length, duration)
        t = asyncio.create_task(create(key[0], body))
        tasks.add(t)
        t.add_done_callback(tasks.discard)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
