"""The end-to-end benchmark's arithmetic (bench/podgap.py, bench/benchlib.py's
marks): which stamps make a pod-to-pod sample, the API's whole-second
timestamps as a cross-check, and the gap's parts where the Job watch sees
something in between. Pure: no cluster, synthetic stamps."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from benchlib import Marks, job_marks, label_key, pod_marks, pod_times
from podgap import measure


def pod(task: str, phase: str = "Running", finished: str | None = None) -> dict[str, Any]:
    statuses = []
    if finished:
        statuses = [{"name": "main", "state": {"terminated": {"finishedAt": finished}}}]
    return {
        "metadata": {
            "labels": {"sluice.dev/pipeline": "c", "sluice.dev/task": task},
            "creationTimestamp": "2026-12-01T10:00:00Z",
        },
        "status": {"phase": phase, "containerStatuses": statuses},
    }


def marks(seen: dict[str, dict[tuple[str, str], float]], **kw: Any) -> Marks:
    m = Marks(api=None, path="", marks=pod_marks, **kw)  # type: ignore[arg-type]
    m.seen = seen
    return m


def test_pod_marks_and_times() -> None:
    assert pod_marks(pod("s00")) == ["added"]
    assert pod_marks(pod("s00", "Succeeded")) == ["added", "succeeded"]
    assert label_key(pod("s01")) == ("c", "s01")
    assert label_key({"metadata": {"labels": {"sluice.dev/pipeline": "c"}}}) is None
    t = pod_times(pod("s00", "Succeeded", "2026-12-01T10:00:03Z"))
    assert t["finished"] is not None and t["created"] is not None
    assert t["finished"] - t["created"] == 3
    complete = {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    assert job_marks(complete) == ["added", "complete"]
    assert job_marks({"status": {"conditions": [{"type": "Failed", "status": "False"}]}}) == [
        "added"
    ]


def test_a_sample_is_pod_succeeded_seen_to_next_pod_added_seen_and_its_parts() -> None:
    k0, k1, k2 = ("c", "s00"), ("c", "s01"), ("c", "s02")
    pods = marks({"added": {k0: 0.0, k1: 2.0, k2: 4.5}, "succeeded": {k0: 1.0, k1: 3.5, k2: 5.0}})
    pods.times = {
        k0: {"created": 100.0, "finished": 101.0},
        k1: {"created": 102.0, "finished": 103.0},
        k2: {"created": 104.0, "finished": 105.0},
    }
    # Sluice: the Job's Complete (from the Job controller) comes between.
    jobs = marks({"added": {k0: 0.0, k1: 1.9, k2: 4.4}, "complete": {k0: 1.8, k1: 4.3}})
    got = measure(pods, jobs, ["c"], 3)
    assert got.gaps == [1.0, 1.0]
    assert got.api_gaps == [1.0, 1.0]
    assert got.consistent == 1.0
    assert got.parts["pod_to_job_complete"] == pytest.approx([0.8, 0.8])
    assert got.parts["job_complete_to_next_job"] == pytest.approx([0.1, 0.1])
    assert got.parts["next_job_to_next_pod"] == pytest.approx([0.1, 0.1])
    assert got.last_pod_done == 5.0


def test_the_floor_creates_before_the_complete_and_gets_its_own_part() -> None:
    k0, k1 = ("c", "s00"), ("c", "s01")
    pods = marks({"added": {k0: 0.0, k1: 1.02}, "succeeded": {k0: 1.0, k1: 2.0}})
    pods.times = {k0: {"created": 0.0, "finished": 1.0}, k1: {"created": 1.0}}
    jobs = marks({"added": {k0: 0.0, k1: 1.01}, "complete": {k0: 2.0}})
    got = measure(pods, jobs, ["c"], 2)
    assert got.gaps == pytest.approx([0.02])
    assert got.parts["pod_to_next_job"] == pytest.approx([0.01])
    assert "pod_to_job_complete" not in got.parts


def test_a_watch_gap_outside_the_whole_second_bounds_is_counted_inconsistent() -> None:
    k0, k1 = ("c", "s00"), ("c", "s01")
    pods = marks({"added": {k0: 0.0, k1: 3.0}, "succeeded": {k0: 1.0}})
    # The API says the next pod was created in the same second: a 2 s watch gap cannot be.
    pods.times = {k0: {"finished": 10.0}, k1: {"created": 10.0}}
    got = measure(pods, marks({}), ["c"], 2)
    assert got.gaps == [2.0]
    assert got.consistent == 0.0
