"""shell.diagnose: a stuck Job's pods and Events, read only when asked and not too often;
and the stuck-steps gauge the recorder keeps from the status."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry

from sluice.core.reconcile import Plan
from sluice.metrics import Metrics
from sluice.shell.diagnose import Diagnoser
from sluice.shell.kube import ApiError
from sluice.shell.recorder import Recorder

KEY = ("ns", "p")


class PodsKube:
    def __init__(self, pods: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
        self.pods, self.events = pods, events
        self.calls: list[tuple[str, str, str]] = []
        self.fail = False

    async def list_pods(self, namespace: str, selector: str, **_: Any) -> dict[str, Any]:
        return self._list("pods", selector, "")

    async def list_events(self, namespace: str, fields: str) -> dict[str, Any]:
        return self._list("events", "", fields)

    def _list(self, resource: str, labels: str, fields: str) -> dict[str, Any]:
        self.calls.append((resource, labels, fields))
        if self.fail:
            raise ApiError(403, "Forbidden")
        return {"items": self.pods if resource == "pods" else self.events}


def waiting_pod(job: str) -> dict[str, Any]:
    state = {"waiting": {"reason": "ErrImagePull", "message": "not found"}}
    return {
        "metadata": {"name": "x", "labels": {"batch.kubernetes.io/job-name": job}},
        "status": {"phase": "Pending", "containerStatuses": [{"name": "main", "state": state}]},
    }


QUOTA = {"type": "Warning", "reason": "FailedCreate", "message": "exceeded quota: q"}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_only_the_asked_jobs_are_read_and_not_again_within_the_interval() -> None:
    kube = PodsKube([waiting_pod("j1")], [])
    d = Diagnoser(kube, interval=3600)  # type: ignore[arg-type]
    assert run(d.read(KEY, ["j1"])) is True
    assert kube.calls == [("pods", "batch.kubernetes.io/job-name=j1", "")]  # no Events read
    assert run(d.read(KEY, ["j1"])) is False and len(kube.calls) == 1
    seen = d.seen(KEY, ["j1", "j2"])
    assert seen["pods"]["j1"][0].waiting_reason == "ErrImagePull" and "j2" not in seen["pods"]
    assert d.seen(KEY, [])["pods"] == {}  # the Job is gone: so is its reading


def test_a_job_without_pods_gets_its_failed_create_events_read() -> None:
    kube = PodsKube([], [QUOTA])
    d = Diagnoser(kube)  # type: ignore[arg-type]
    run(d.read(KEY, ["j1"]))
    assert [c[0] for c in kube.calls] == ["pods", "events"]
    assert "involvedObject.name=j1" in kube.calls[1][2]
    assert "reason=FailedCreate" in kube.calls[1][2]
    seen = d.seen(KEY, ["j1"])
    assert seen["pods"] == {"j1": ()}
    assert seen["job_events"]["j1"][0].message == "exceeded quota: q"


def test_a_failed_read_is_not_taken_for_no_pods_and_is_not_retried_at_once() -> None:
    kube = PodsKube([], [])
    kube.fail = True
    d = Diagnoser(kube, interval=3600)  # type: ignore[arg-type]
    assert run(d.read(KEY, ["j1"])) is False
    assert d.seen(KEY, ["j1"])["pods"] == {}
    run(d.read(KEY, ["j1"]))
    assert len(kube.calls) == 1


def test_decide_runs_again_with_what_it_read_when_asked() -> None:
    kube = PodsKube([waiting_pod("j1")], [])
    d = Diagnoser(kube, stuck_after=3)  # type: ignore[arg-type]
    calls: list[dict[str, Any]] = []

    def decide(**seen: Any) -> Plan:
        calls.append(seen)
        return Plan(diagnose=["j1"])

    run(d.decide(KEY, ["j1"], decide))
    assert [sorted(c["pods"]) for c in calls] == [[], ["j1"]]
    assert calls[0]["stuck_after"] == 3


def _stuck_status(*reasons: str) -> dict[str, Any]:
    tasks = [
        {"name": f"t{i}", "phase": "Running", "reason": r, "stuckAt": "2026-12-01T00:00:00Z"}
        for i, r in enumerate(reasons)
    ]
    return {"phase": "Running", "tasks": tasks}


def _gauge(m: Metrics) -> dict[tuple[str, str], float]:
    return {
        (s.labels["namespace"], s.labels["reason"]): s.value
        for metric in m.steps_stuck.collect()
        for s in metric.samples
    }


def test_the_stuck_gauge_counts_by_reason_per_namespace_and_is_cleared() -> None:
    m = Metrics(CollectorRegistry())
    rec = Recorder(m)
    rec.lead(True)
    rec.plan(("ns", "a"), Plan(), _stuck_status("ErrImagePull", "Unschedulable"))
    rec.plan(("ns", "b"), Plan(), _stuck_status("ErrImagePull"))
    assert _gauge(m) == {("ns", "ErrImagePull"): 2, ("ns", "Unschedulable"): 1}
    rec.plan(("ns", "a"), Plan(), {"phase": "Running", "tasks": [{"name": "t0"}]})
    assert _gauge(m) == {("ns", "ErrImagePull"): 1}
    rec.forget(("ns", "b"))
    assert _gauge(m) == {}
    rec.plan(("ns", "a"), Plan(), _stuck_status("FailedCreate"))
    rec.lead(False)
    assert _gauge(m) == {}
