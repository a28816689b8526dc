"""The benchmarks (bench/) at toy sizes, so the scripts cannot rot.

`make bench` runs them at full size on control planes of their own (one
without the Job controller, then one with it for the end-to-end figures);
here `bench/run.py --tiny` does the same in seconds, on instances derived from
this session's (state dirs `<cluster dir>-bench-smoke` and
`<cluster dir>-bench-smoke-full`, port bases + 500 and + 505), each started
fresh and stopped after its scripts. The figures mean nothing at this size:
only that every script runs and every key is written.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.cluster import ROOT

pytestmark = pytest.mark.cluster

CONTRACT = {
    "handoff_p50_ms",
    "handoff_p95_ms",
    "handoff_p99_ms",
    "handoff_p99_ms_200",
    "floor_p50_ms",
    "floor_ratio_p50",
    "tasks_per_s",
    "api_requests_per_task",
    "cpu_s_per_task",
    "rss_mib_1000",
    "pod_gap_p50_ms",
    "pod_gap_p99_ms",
    "pod_gap_p99_ms_50",
    "chain20_wall_s",
    "pod_gap_floor_ratio_p50",
}
"""The keys of bench/out/results.json that other tools rely on."""

END_TO_END = {
    "pod_gap_p95_ms",
    "pod_gap_p50_ms_50",
    "floor_pod_gap_p50_ms",
    "floor_pod_gap_p99_ms_50",
    "floor_chain20_wall_s",
    "e2e_api_requests_per_task",
    "e2e_cpu_s_per_task",
    "fanin_delay_max_ms",
    "fanin_runs",
    "soak_rss_start_mib",
    "soak_rss_end_mib",
    "soak_pipelines",
}
"""The full instance's figures: pod to pod and its floor, the fan-in, the soak."""

STATUS_LAG = {"status_lag_ms", "status_lag_p50_ms_200", "status_lag_p99_ms_200"}
"""Not in the contract, but what the coalesced status writes cost must stay measured."""

PARTS = {
    f"{who}{part}_{q}_ms_200"
    for who in ("", "floor_")
    for part in ("seen", "after_seen")
    for q in ("p50", "p99")
}
"""The hand-off cut where a watch sees the completion: the API server's part before
anyone can act, and the operator's (or the floor's) part after it."""


def test_every_benchmark_runs_at_tiny_size_and_writes_the_contract_keys(tmp_path: Path) -> None:
    state = Path(os.environ.get("SLUICE_CLUSTER_DIR", ROOT / ".cluster"))
    port_base = int(os.environ.get("SLUICE_CLUSTER_PORT_BASE", "26400")) + 500
    env = {
        **os.environ,
        "SLUICE_BENCH_CLUSTER_DIR": f"{state}-bench-smoke",
        "SLUICE_BENCH_PORT_BASE": str(port_base),
    }
    out = tmp_path / "results.json"
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--tiny", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, f"bench/run.py --tiny failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    results = json.loads(out.read_text())
    keys = CONTRACT | STATUS_LAG | PARTS | END_TO_END
    missing = keys - set(results)
    assert not missing, f"results.json lacks {sorted(missing)}"
    for key in keys:
        value = results[key]
        assert isinstance(value, int | float) and math.isfinite(value) and value >= 0, (key, value)
    assert results["size"] == "tiny"
    assert results["fanin_runs"] >= 1 and results["soak_pipelines"] >= 1
    assert "operator / floor at p50" in r.stdout  # the table was printed
    assert "pod to pod / its floor at p50" in r.stdout
