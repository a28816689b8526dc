"""The recorder: what reconciles' plans mean for the metrics, here the per-step
last-attempt durations (`sluice_step_last_duration_seconds`), played out on the
in-memory world with the status the shell hands over (the status after each plan)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from sluice.metrics import Metrics
from sluice.shell.recorder import Recorder
from support.world import T0, World, ts

IMG = {"image": "busybox:1.36"}
KEY = ("ns", "p")
NAME = "sluice_step_last_duration_seconds"


def step(name: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "task": dict(IMG), "dependsOn": list(deps), **extra}


class Recorded:
    """A world whose every reconcile is recorded, as the controller does."""

    def __init__(self, spec: dict[str, Any], leading: bool = True) -> None:
        self.world = World.of(spec)
        self.registry = CollectorRegistry()
        self.recorder = Recorder(Metrics(self.registry))
        self.recorder.lead(leading)

    def reconcile(self) -> None:
        plan = self.world.reconcile()
        self.recorder.plan(KEY, plan, self.world.status)

    def durations(self) -> dict[tuple[str, str], float]:
        """(step, result) -> seconds, of pipeline ns/p."""
        out = {}
        for family in self.registry.collect():
            for s in family.samples:
                if s.name == NAME:
                    labels = s.labels
                    assert (labels["namespace"], labels["pipeline"]) == KEY
                    out[(labels["step"], labels["result"])] = s.value
        return out


def retried() -> dict[str, Any]:
    return {
        "tasks": [
            step("prep"),
            step("train", "prep", retry={"limit": 2, "backoff": {"initialSeconds": 10}}),
        ]
    }


def _run_retried(r: Recorded) -> None:
    w = r.world
    r.reconcile()
    w.advance(4)
    w.succeed("prep")
    r.reconcile()  # train's attempt 1 starts
    w.advance(7)
    w.fail("train")
    r.reconcile()  # Retrying, 10 s backoff
    w.advance(10)
    r.reconcile()  # attempt 2 starts, 17 s after the first
    w.advance(30)
    w.succeed("train")
    r.reconcile()


def test_each_step_has_its_last_attempts_duration_by_result() -> None:
    r = Recorded(retried())
    _run_retried(r)

    # Attempt 2's own 30 s, not the 47 s since the step's first attempt started;
    # the failed attempt keeps its series beside it.
    assert r.world.phase == "Succeeded"
    assert r.durations() == {
        ("prep", "succeeded"): 4.0,
        ("train", "failed"): 7.0,
        ("train", "succeeded"): 30.0,
    }


def test_the_next_attempt_replaces_the_value_in_place() -> None:
    r = Recorded({"tasks": [step("a")]})
    w = r.world
    r.reconcile()
    w.advance(5)
    w.succeed("a")
    r.reconcile()
    assert r.durations() == {("a", "succeeded"): 5.0}

    w.annotate("sluice.dev/rerun", "1")
    r.reconcile()
    w.advance(12)
    w.succeed("a")
    r.reconcile()
    assert r.durations() == {("a", "succeeded"): 12.0}


def test_a_step_leaving_the_spec_and_a_deleted_pipeline_take_their_series() -> None:
    r = Recorded(retried())
    _run_retried(r)
    r.world.edit_spec(tasks=[step("prep")])
    r.reconcile()
    assert r.durations() == {("prep", "succeeded"): 4.0}

    r.recorder.forget(KEY)
    assert r.durations() == {}


def test_only_the_leader_exports_them_and_losing_the_lead_clears_them() -> None:
    standby = Recorded(retried(), leading=False)
    _run_retried(standby)
    assert standby.durations() == {}

    r = Recorded(retried())
    _run_retried(r)
    assert len(r.durations()) == 3
    r.recorder.lead(False)
    assert r.durations() == {}


def test_a_step_failed_while_waiting_is_not_an_attempt() -> None:
    """A pipeline timeout fails a Retrying step: no attempt ran, nothing is timed."""
    spec = {
        "timeoutSeconds": 20,
        "tasks": [step("a", retry={"limit": 2, "backoff": {"initialSeconds": 60}})],
    }
    r = Recorded(spec)
    w = r.world
    r.reconcile()
    w.advance(3)
    w.fail("a")
    r.reconcile()  # Retrying
    w.advance(30)
    r.reconcile()  # the pipeline times out: a goes Retrying -> Failed
    assert w.task_phase("a") == "Failed"
    assert r.durations() == {("a", "failed"): 3.0}
    counts = {
        s.labels["result"]: s.value
        for f in r.registry.collect()
        for s in f.samples
        if s.name == "sluice_task_duration_seconds_count"
    }
    assert counts == {"failed": 1.0}


def test_schedule_and_cache_outcomes_are_counted_by_namespace() -> None:
    spec = {
        "schedule": {"cron": "@every 10s"},
        "cache": {"enabled": True},
        "tasks": [step("a")],
    }
    r = Recorded(spec)
    r.world.pipeline["metadata"]["creationTimestamp"] = ts(T0)
    r.reconcile()  # run 1: a cache miss
    r.world.advance(10)
    r.reconcile()  # the tick while run 1 runs: skipped
    r.world.succeed("a")
    r.reconcile()
    r.world.advance(10)
    r.reconcile()  # run 2 starts, and `a` comes from the cache
    r.reconcile()
    value = r.registry.get_sample_value
    assert value("sluice_scheduled_runs_total", {"namespace": "ns", "outcome": "skipped"}) == 1
    assert value("sluice_scheduled_runs_total", {"namespace": "ns", "outcome": "started"}) == 1
    assert value("sluice_schedule_lag_seconds_count") == 1
    assert value("sluice_task_cache_misses_total", {"namespace": "ns"}) == 1
    assert value("sluice_task_cache_hits_total", {"namespace": "ns"}) == 1
