"""A bad network between the operator and the API server: stalls, drops, resets."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from support.cluster import Cluster
from support.flaky_proxy import FlakyProxy
from support.operator import OperatorProcess
from support.pipelines import Sluice
from support.wait import wait_for

pytestmark = pytest.mark.cluster

WATCH_TIMEOUT = 10.0
CHAOS_SECONDS = 40.0


def inline(name: str, *deps: str) -> dict[str, Any]:
    return {"name": name, "dependsOn": list(deps), "task": {"image": "busybox:1.36"}}


def test_pipelines_complete_through_a_network_that_stalls_drops_and_resets(
    cluster: Cluster,
    api_client: client.ApiClient,
    crds: None,
    make_namespace: Callable[[str], str],
    tmp_path: Path,
) -> None:
    ns = make_namespace("net-")
    s = Sluice(api_client, ns)
    text = cluster.kubeconfig.read_text()
    port = int(re.search(r"server: https://127\.0\.0\.1:(\d+)", text).group(1))  # type: ignore[union-attr]
    proxy = FlakyProxy(upstream_port=port, seed=7).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(text.replace(f"127.0.0.1:{port}", f"127.0.0.1:{proxy.listen_port}"))
    op = OperatorProcess(
        kubeconfig,
        tmp_path / "operator.log",
        namespaces=[ns],
        extra_args=["--watch-timeout", str(WATCH_TIMEOUT), "--lease-duration", "15"],
    )
    try:
        op.start()
        proxy.chaos = True
        chaos_started = time.monotonic()
        names = [f"chain-{i}" for i in range(5)]
        for name in names:
            s.pipeline(
                name,
                {"tasks": [inline("s0")] + [inline(f"s{k}", f"s{k - 1}") for k in range(1, 6)]},
            )
        wait_for(
            lambda: time.monotonic() - chaos_started >= CHAOS_SECONDS,
            timeout=CHAOS_SECONDS + 5,
            what="the end of the chaos window",
            interval=0.5,
        )
        proxy.chaos = False
        calm = time.monotonic()
        for name in names:
            s.wait_phase(name, "Succeeded", timeout=180)
        after_calm = time.monotonic() - calm
    finally:
        op.stop()
        proxy.stop()
    assert sum(proxy.faults.values()) >= 10, proxy.faults
    # Whatever was still pending when the network healed finished promptly:
    # no watch stayed dead past its timeout (plus the pods' own run time).
    assert after_calm < WATCH_TIMEOUT + 6 * 2 + 30, after_calm
    keys = [
        (
            j.metadata.labels["sluice.dev/pipeline"],
            j.metadata.labels["sluice.dev/task"],
            j.metadata.labels["sluice.dev/attempt"],
        )
        for j in s.jobs()
    ]
    assert len(keys) == len(set(keys)) == 5 * 6  # nothing doubled, nothing lost
    print(f"\nfaults injected: {proxy.faults}; all done {after_calm:.1f}s after the network healed")
