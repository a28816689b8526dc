"""The schedule stage of a reconcile, and the run history it and every run start feed.

``tick`` runs right after ``stages.choose_run`` (``sluice.core.reconcile.decide``). It asks
``core.schedule.decide`` what a scheduled pipeline does now and carries it out on the
Decision ``d``: a due tick starts run ``N+1`` exactly as ``sluice.dev/rerun`` does
(``stages.start_run``, trigger ``Schedule``; ``stages.stop_older_runs``, which runs next,
stops the replaced run's Jobs for ``Replace``), a skipped or missed tick is an Event, and
the next tick is the worker's existing timer (``d.due_in``), never a poll. It also hands
the run's settings the later stages need to ``d``: ``spec.historyLimit`` and the cached
steps' key inputs (``core.caching``).

``write_history`` runs last (``reconcile._finish``): the current run is opened in
``status.history`` (``core.history.open_run``) with what started it, and closed once its
phase has settled (``close_run``), the list cut to ``spec.historyLimit``.

Reads ``status.schedule``, ``status.phase``, the Pipeline's creation time and uid, and the
spec's ``schedule`` and ``suspend``. Writes ``status.schedule``, a new run, Events
(``ScheduledRunStarted``, ``ScheduleSkipped``, ``MissedSchedule``), ``plan.scheduled`` (the
metrics) and the wake-up time of the next tick.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sluice.api import parse_rfc3339
from sluice.api.schedule import RunTrigger, ScheduleStatus
from sluice.core import history, stages
from sluice.core.decision import Decision
from sluice.core.observe import JobView
from sluice.core.phases import P, T
from sluice.core.plan import ScheduleOutcome
from sluice.core.prepare import Prepared
from sluice.core.schedule import Action, lag_seconds
from sluice.core.schedule import decide as decide_tick

__all__ = ["tick", "write_history"]

_RUNNING = frozenset({P.PENDING, P.RUNNING})
_SETTLED = frozenset({P.SUCCEEDED, P.FAILED, P.DEGRADED})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SETTLE_FIRST_SECONDS = 1


def tick(
    d: Decision, prepared: Prepared, meta: Mapping[str, Any], views: Sequence[JobView]
) -> None:
    """Act on the schedule's due tick, if any (see the module's docstring).

    A run the status still calls running although every step's Job has succeeded (the
    operator was down when it finished) is not "running": the tick waits a second, for
    this reconcile to record the run's end, and is then run rather than skipped."""
    spec = prepared.report.pipeline
    d.history_limit = spec.history_limit if spec is not None else None
    d.cache = prepared.cache_inputs
    st = d.status
    if spec is not None and not d.cache:
        st.cache = None  # no step is cached any more: nothing to keep
    cron = prepared.cron
    if spec is None or spec.schedule is None or cron is None or st.run == 0:
        if spec is not None and spec.schedule is None:
            st.schedule = None  # the schedule was removed: nothing is planned
        return
    sched = spec.schedule
    if st.phase in _RUNNING and _done_by_jobs(d, views, len(spec.tasks) + len(spec.finally_)):
        d.due_in(d.now + timedelta(seconds=_SETTLE_FIRST_SECONDS))
        return
    now_status = st.schedule or ScheduleStatus()
    created = meta.get("creationTimestamp")
    anchor = parse_rfc3339(created) if created else _EPOCH  # the API server always sets it
    decision = decide_tick(
        cron,
        now=d.now,
        anchor=anchor,
        last=now_status.last_schedule_time,
        planned=now_status.next_schedule_time,
        running=st.phase in _RUNNING,
        suspended=spec.suspend,
        policy=sched.concurrency_policy,
        deadline_seconds=sched.starting_deadline_seconds,
        uid=meta.get("uid") or "",
    )
    st.schedule = ScheduleStatus(
        last_schedule_time=decision.last, next_schedule_time=decision.planned
    )
    d.due_in(decision.wake_at)
    if decision.missed:
        d.plan.scheduled.append(ScheduleOutcome("missed", decision.missed))
        d.event("Warning", "MissedSchedule", f"Schedule: {decision.reason}.")
    if decision.action == Action.SKIP:
        d.plan.scheduled.append(ScheduleOutcome("skipped"))
        d.event("Normal", "ScheduleSkipped", f"Schedule: {decision.reason}.")
    elif decision.action in (Action.RUN, Action.REPLACE) and decision.tick is not None:
        old = st.run
        stages.start_run(d, old + 1, st.handled_rerun, st.handled_retry, RunTrigger.SCHEDULE)
        lag = lag_seconds(decision.tick, d.now)
        d.plan.scheduled.append(ScheduleOutcome("started", lag_seconds=lag))
        replaced = f", replacing run {old} (concurrencyPolicy Replace)" * (
            decision.action == Action.REPLACE
        )
        d.event(
            "Normal",
            "ScheduledRunStarted",
            f"Run {st.run} started for the tick of {_clock(decision.tick)}{replaced}.",
        )


def _done_by_jobs(d: Decision, views: Sequence[JobView], steps: int) -> bool:
    """Every step of the run is done, by the status or by its current Job's success."""
    if len(d.steps) < steps or not d.steps:
        return False
    succeeded = {
        (v.step, v.attempt) for v in views if v.run == d.status.run and v.state == "Succeeded"
    }
    return all(
        ts.phase in (T.SUCCEEDED, T.SKIPPED)
        or (ts.phase == T.RUNNING and (ts.name, ts.attempts) in succeeded)
        for ts in d.steps.values()
    )


def write_history(d: Decision) -> None:
    """Open the current run in ``status.history`` and close it once it has settled."""
    st = d.status
    if st.run == 0:
        return
    limit = d.history_limit
    trigger = d.trigger or (RunTrigger.CREATED if st.run == 1 else RunTrigger.RERUN)
    started = st.started_at or d.now
    records = history.open_run(
        st.history, run=st.run, trigger=trigger, started_at=started, limit=limit
    )
    if st.phase in _SETTLED and st.finished_at is not None:
        assert st.phase is not None
        records = history.close_run(
            records,
            run=st.run,
            phase=st.phase,
            finished_at=st.finished_at,
            message=st.message,
            limit=limit,
        )
    st.history = records or None


def _clock(t: Any) -> str:
    return str(t.strftime("%Y-%m-%dT%H:%M:%SZ"))
