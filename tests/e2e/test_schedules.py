"""Schedules and run history on the real control plane: `@every 10s` (the minimum) keeps
each test to a few ticks. Times are the API server's (the same machine's clock)."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from support.operator import OperatorProcess
from support.pipelines import Sluice, sim
from support.wait import wait_for

pytestmark = pytest.mark.cluster

BUSYBOX = "busybox:1.36"


def when(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def scheduled(duration: str = "1s", **schedule: Any) -> dict[str, Any]:
    return {
        "schedule": {"cron": "@every 10s", **schedule},
        "tasks": [
            {"name": "work", "task": {"image": BUSYBOX, "podTemplate": sim(duration=duration)}}
        ],
    }


def history(s: Sluice, name: str) -> list[dict[str, Any]]:
    return list(s.status(name).get("history") or [])


def reasons(s: Sluice, name: str, reason: str) -> list[str]:
    return [e.message for e in s.events(name) if e.reason == reason]


@pytest.fixture
def s(api_client: client.ApiClient, e2e_namespace: str) -> Sluice:
    return Sluice(api_client, e2e_namespace)


def test_every_10s_makes_runs_that_the_history_shows_with_trigger_schedule(
    s: Sluice, operator: OperatorProcess
) -> None:
    s.pipeline("tick", scheduled())

    def two_scheduled_runs() -> list[dict[str, Any]] | None:
        done = [r for r in history(s, "tick") if r["trigger"] == "Schedule" and r.get("phase")]
        return done if len(done) >= 2 else None

    done = wait_for(two_scheduled_runs, timeout=45, what="two scheduled runs in the history")
    assert all(r["phase"] == "Succeeded" for r in done)
    records = history(s, "tick")
    assert records[-1]["run"] == 1 and records[-1]["trigger"] == "Created"
    # On time: a run starts within PROMPT_SECONDS (5 s) of its tick (anchor + 10 s x k).
    anchor = when(s.get("tick")["metadata"]["creationTimestamp"])
    lags = [(when(r["startedAt"]) - anchor).total_seconds() % 10 for r in done]
    print(f"schedule lag (whole seconds): {lags}")
    assert all(lag <= 5 for lag in lags), lags
    assert [r["run"] for r in records] == sorted((r["run"] for r in records), reverse=True)
    sched = s.status("tick")["schedule"]
    assert when(sched["nextScheduleTime"]) > when(sched["lastScheduleTime"])
    assert reasons(s, "tick", "ScheduledRunStarted")
    text = operator.metrics()
    assert f'sluice_scheduled_runs_total{{namespace="{s.ns}",outcome="started"}}' in text
    assert "sluice_schedule_lag_seconds_count" in text


def test_forbid_never_overlaps_runs_and_says_so(s: Sluice) -> None:
    s.pipeline("slow", scheduled(duration="15s"))  # longer than the interval
    wait_for(lambda: reasons(s, "slow", "ScheduleSkipped"), timeout=30, what="a skipped tick")
    message = reasons(s, "slow", "ScheduleSkipped")[0]
    assert "the previous run is still running" in message

    def second_run_started() -> list[dict[str, Any]] | None:
        records = history(s, "slow")
        return records if any(r["run"] == 2 for r in records) else None

    records = wait_for(second_run_started, timeout=45, what="run 2 after run 1 finished")
    by_run = {r["run"]: r for r in records}
    assert by_run[1]["phase"] == "Succeeded"
    assert when(by_run[1]["finishedAt"]) <= when(by_run[2]["startedAt"])
    assert by_run[2]["trigger"] == "Schedule"


def test_replace_stops_the_running_runs_jobs(s: Sluice) -> None:
    s.pipeline("replace", scheduled(duration="120s", concurrencyPolicy="Replace"))
    s.wait_task("replace", "work", "Running", timeout=30)
    first = [j.metadata.name for j in s.jobs("replace")]
    assert len(first) == 1
    wait_for(lambda: s.status("replace").get("run", 0) >= 2, timeout=30, what="run 2")

    def old_job_stopped() -> bool:
        jobs = {j.metadata.name: j for j in s.jobs("replace")}
        old = jobs.get(first[0])
        return old is None or old.metadata.deletion_timestamp is not None

    wait_for(old_job_stopped, timeout=30, what="run 1's Job deleted")
    assert reasons(s, "replace", "ScheduledRunStarted")
    assert any("Replace" in m for m in reasons(s, "replace", "ScheduledRunStarted"))
    replaced = next(r for r in history(s, "replace") if r["run"] == 1)
    assert "Replaced by run 2" in replaced["message"]


def _ticks_passed(anchor: datetime, after: datetime, n: int, every: int = 10) -> datetime:
    """The ``n``-th tick of ``@every <every>s`` (from ``anchor``) after ``after``."""
    k = math.floor((after - anchor).total_seconds() / every) + n
    return anchor + timedelta(seconds=every * k)


def _wait_until(t: datetime) -> None:
    wait_for(lambda: datetime.now(UTC) >= t, timeout=120, what=f"the clock to pass {t}")


def test_an_operator_down_across_ticks_catches_up_once_within_the_deadline_only(
    s: Sluice, operator: OperatorProcess
) -> None:
    # "late": every tick within 60 s is caught up, once. "strict": 3 s; B ticks every 30 s
    # so that the operator can come back well inside its interval, past the deadline.
    late = s.pipeline("late", scheduled(startingDeadlineSeconds=60))
    strict_spec = scheduled(startingDeadlineSeconds=3)
    strict_spec["schedule"]["cron"] = "@every 30s"
    strict = s.pipeline("strict", strict_spec)
    s.wait_phase("late", "Succeeded", timeout=30)
    s.wait_phase("strict", "Succeeded", timeout=30)
    operator.stop()
    stopped = datetime.now(UTC)
    late_anchor = when(late["metadata"]["creationTimestamp"])
    strict_anchor = when(strict["metadata"]["creationTimestamp"])
    try:
        # Three ticks of "late" and one of "strict" pass, the latter by 8 s (> 3 s).
        strict_tick = _ticks_passed(strict_anchor, stopped, 1, every=30)
        _wait_until(max(_ticks_passed(late_anchor, stopped, 3), strict_tick) + timedelta(seconds=8))
        runs_before = s.status("late")["run"]
    finally:
        operator.start()
    started = time.monotonic()

    wait_for(lambda: reasons(s, "late", "MissedSchedule"), timeout=30, what="late's missed ticks")
    (missed,) = reasons(s, "late", "MissedSchedule")
    assert "missed; only the latest is run" in missed
    wait_for(lambda: s.status("late")["run"] == runs_before + 1, timeout=30, what="one catch-up")
    catch_up = next(r for r in history(s, "late") if r["run"] == runs_before + 1)
    assert catch_up["trigger"] == "Schedule"
    # The next run is the next regular tick's, not a second catch-up.
    nxt = when(s.status("late")["schedule"]["nextScheduleTime"])
    assert (nxt - late_anchor).total_seconds() % 10 == 0
    assert nxt > when(catch_up["startedAt"])

    wait_for(lambda: reasons(s, "strict", "MissedSchedule"), timeout=30, what="strict's miss")
    (strict_missed,) = reasons(s, "strict", "MissedSchedule")
    assert "more than startingDeadlineSeconds (3); none is run" in strict_missed
    st = s.status("strict")
    assert st["run"] == 1
    assert when(st["schedule"]["lastScheduleTime"]) == strict_tick
    assert time.monotonic() - started < 60
