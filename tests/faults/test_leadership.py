"""Two replicas and the Lease: how fast a standby takes over, and what a replica
that lost the Lease without dying still says. Each test has its own operators on
its own namespace (the fixtures of test_faults.py)."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from support.operator import OperatorProcess
from support.pipelines import Sluice
from support.wait import wait_for

BUSYBOX = "busybox:1.36"


def inline(name: str, *deps: str) -> dict[str, Any]:
    return {"name": name, "dependsOn": list(deps), "task": {"image": BUSYBOX}}


pytestmark = pytest.mark.cluster


def _gauges(metrics: str, name: str) -> dict[str, float]:
    """The samples of one metric: {label text: value}."""
    pattern = re.compile(rf"^{name}(\{{[^}}]*\}})? ([0-9.e+-]+)$", re.MULTILINE)
    return {m.group(1) or "": float(m.group(2)) for m in pattern.finditer(metrics)}


def _job_names(s: Sluice) -> set[str]:
    return {j.metadata.name for j in s.jobs()}


@pytest.mark.parametrize("run", range(3))
def test_failover_from_a_killed_leader_to_the_next_job(
    api_client: client.ApiClient,
    fault_ns: str,
    start_operator: Callable[..., OperatorProcess],
    run: int,
) -> None:
    """Failover, measured the way users feel it: from the leader's SIGKILL to the
    next Job created (by the standby, now leading). Printed; the bound is loose."""
    s = Sluice(api_client, fault_ns)
    first = start_operator("--lease-duration", "6")
    wait_for(lambda: "leading" in first.log() or None, timeout=30, what="a leader")
    second = start_operator("--lease-duration", "6")
    wait_for(lambda: "waiting" in second.log() or None, timeout=30, what="a follower")
    chain = [inline("k0")] + [inline(f"k{i}", f"k{i - 1}") for i in range(1, 6)]
    s.pipeline("fo", {"tasks": chain})
    wait_for(
        lambda: s.task_status("fo", "k2").get("phase") == "Running",
        timeout=60,
        what="progress under the first replica",
    )
    before = _job_names(s)
    first.kill()
    killed = time.monotonic()
    wait_for(lambda: _job_names(s) - before or None, timeout=60, interval=0.05, what="a new Job")
    failover = time.monotonic() - killed
    s.wait_phase("fo", "Succeeded", timeout=120)
    print(f"\nFAILOVER {failover:.2f} s (kill -9 of the leader to the next Job, 6 s lease)")
    assert failover < 6 + 6


def test_a_replica_that_lost_the_lease_without_dying_exports_no_pipeline_gauges(
    api_client: client.ApiClient,
    fault_ns: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    s = Sluice(api_client, fault_ns)
    first = start_operator("--lease-duration", "4")
    wait_for(lambda: "leading" in first.log() or None, timeout=30, what="a leader")
    second = start_operator("--lease-duration", "4")
    wait_for(lambda: "waiting" in second.log() or None, timeout=30, what="a follower")
    s.pipeline("g", {"tasks": [inline("a")]})
    s.wait_phase("g", "Succeeded")
    wait_for(
        lambda: _gauges(first.metrics(), "sluice_pipelines").get('{phase="Succeeded"}') == 1,
        timeout=30,
        what="the leader's phase gauge",
    )
    assert first.proc is not None
    os.killpg(first.proc.pid, signal.SIGSTOP)  # paused past its lease, not dead
    try:
        wait_for(lambda: "leading" in second.log() or None, timeout=30, what="the takeover")
    finally:
        os.killpg(first.proc.pid, signal.SIGCONT)
    wait_for(
        lambda: _gauges(first.metrics(), "sluice_leader") == {"": 0.0},
        timeout=30,
        what="the old leader to say it no longer leads",
    )
    stale: dict[str, Any] = {
        name: _gauges(first.metrics(), name)
        for name in ("sluice_pipelines", "sluice_pipeline_degraded")
    }
    assert stale == {"sluice_pipelines": {}, "sluice_pipeline_degraded": {}}
    wait_for(
        lambda: _gauges(second.metrics(), "sluice_pipelines").get('{phase="Succeeded"}') == 1,
        timeout=30,
        what="the new leader's phase gauge",
    )
    assert _gauges(second.metrics(), "sluice_leader") == {"": 1.0}
    assert _gauges(second.metrics(), "sluice_pipeline_degraded") == {
        f'{{namespace="{fault_ns}",pipeline="g"}}': 0.0
    }
