"""The schedule stage and the run history, played out in the in-memory world (fake clock)."""

from __future__ import annotations

from typing import Any

from support.world import T0, World, ts

IMG = {"image": "busybox:1.36"}


def scheduled(**schedule: Any) -> World:
    spec = {
        "tasks": [{"name": "a", "task": dict(IMG)}],
        "schedule": {"cron": "@every 10s", **schedule},
    }
    w = World.of(spec)
    w.pipeline["metadata"]["creationTimestamp"] = ts(T0)
    return w


def events(w: World, reason: str) -> list[str]:
    return [e.message for p in w.plans for e in p.events if e.reason == reason]


def test_first_sight_plans_the_first_tick_and_sets_the_timer() -> None:
    w = scheduled()
    plan = w.reconcile()
    assert w.status["run"] == 1
    assert w.status["schedule"] == {"nextScheduleTime": ts(T0.replace(second=10))}
    assert plan.requeue_after == 10
    assert w.status["history"] == [{"run": 1, "trigger": "Created", "startedAt": ts(T0)}]


def test_a_tick_starts_a_new_run_with_trigger_schedule_and_history_keeps_both() -> None:
    w = scheduled()
    w.reconcile()
    w.succeed("a")
    w.reconcile()
    assert w.phase == "Succeeded"
    w.advance(10)
    plan = w.reconcile()
    assert w.status["run"] == 2
    assert w.active_tasks() == {"a"}
    assert events(w, "ScheduledRunStarted") == [
        f"Run 2 started for the tick of {ts(T0.replace(second=10))}."
    ]
    assert [(o.outcome, o.lag_seconds) for o in plan.scheduled] == [("started", 0.0)]
    assert w.status["schedule"]["lastScheduleTime"] == ts(T0.replace(second=10))
    assert w.status["schedule"]["nextScheduleTime"] == ts(T0.replace(second=20))
    history = w.status["history"]
    assert [(r["run"], r["trigger"], r.get("phase")) for r in history] == [
        (2, "Schedule", None),
        (1, "Created", "Succeeded"),
    ]


def test_forbid_skips_the_tick_while_the_run_is_running() -> None:
    w = scheduled()
    w.reconcile()
    w.advance(10)
    plan = w.reconcile()
    assert w.status["run"] == 1
    assert [o.outcome for o in plan.scheduled] == ["skipped"]
    assert "previous run is still running" in events(w, "ScheduleSkipped")[0]


def test_replace_stops_the_running_run_and_closes_it_in_the_history() -> None:
    w = scheduled(concurrencyPolicy="Replace")
    w.reconcile()
    old_job = w.job_of("a")["metadata"]["name"]
    w.advance(10)
    plan = w.reconcile()
    assert w.status["run"] == 2
    assert old_job in plan.delete
    first = w.status["history"][1]
    assert first["run"] == 1 and first["phase"] == "Running"
    assert "Replaced by run 2" in first["message"]


def test_after_downtime_one_catch_up_run_and_missed_ticks_reported() -> None:
    w = scheduled(startingDeadlineSeconds=60)
    w.reconcile()
    w.succeed("a")
    w.reconcile()
    w.advance(45)  # ticks at 10, 20, 30, 40 passed unseen
    w.settle()
    runs = [o for p in w.plans for o in p.scheduled]
    assert w.status["run"] == 2
    assert [o.outcome for o in runs] == ["missed", "started"]
    assert runs[0].count == 3
    assert "3 ticks missed; only the latest is run" in events(w, "MissedSchedule")[0]


def test_a_tick_missed_beyond_the_deadline_is_not_run() -> None:
    w = scheduled(startingDeadlineSeconds=2)
    w.reconcile()
    w.succeed("a")
    w.reconcile()
    w.advance(15)  # the tick of 10 s is 5 s late
    plan = w.reconcile()
    assert w.status["run"] == 1
    assert [o.outcome for o in plan.scheduled] == ["missed"]
    assert "more than startingDeadlineSeconds (2)" in events(w, "MissedSchedule")[0]
    assert w.status["schedule"]["lastScheduleTime"] == ts(T0.replace(second=10))


def test_suspend_stops_the_schedule() -> None:
    w = scheduled()
    w.reconcile()
    w.succeed("a")
    w.reconcile()
    w.pipeline["spec"]["suspend"] = True
    plan = w.reconcile()
    assert "nextScheduleTime" not in (w.status.get("schedule") or {})
    w.advance(30)
    w.reconcile()
    assert w.status["run"] == 1
    assert plan.requeue_after is None


def test_history_is_bounded_by_history_limit() -> None:
    w = scheduled()
    w.pipeline["spec"]["historyLimit"] = 2
    w.reconcile()
    for _ in range(4):
        w.succeed("a")
        w.reconcile()
        w.advance(10)
        w.reconcile()
    assert [r["run"] for r in w.status["history"]] == [5, 4]


def test_history_records_a_rerun() -> None:
    w = World.of({"tasks": [{"name": "a", "task": dict(IMG)}]})
    w.reconcile()
    w.succeed("a")
    w.reconcile()
    w.pipeline["metadata"]["annotations"]["sluice.dev/rerun"] = "x"
    w.reconcile()
    assert [(r["run"], r["trigger"]) for r in w.status["history"]] == [
        (2, "Rerun"),
        (1, "Created"),
    ]


def test_a_run_that_finished_while_the_operator_was_down_is_not_running_for_the_tick() -> None:
    w = scheduled(startingDeadlineSeconds=60)
    w.reconcile()
    w.advance(12)
    w.succeed("a")  # its Job finished unseen; the status still says Running
    plan = w.reconcile()
    assert w.phase == "Succeeded" and w.status["run"] == 1
    assert plan.requeue_after == 1
    w.advance(1)
    plan = w.reconcile()
    assert w.status["run"] == 2
    assert [o.outcome for o in plan.scheduled] == ["started"]
