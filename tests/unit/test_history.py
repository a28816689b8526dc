"""sluice.core.history: status.history is newest first, bounded and idempotent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from sluice.api import PipelinePhase, dump
from sluice.api.schedule import HISTORY_LIMIT_MAX, MAX_HISTORY_MESSAGE, RunTrigger
from sluice.core.history import close_run, effective_limit, open_run, trigger_of

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_open_then_close_is_compact_on_the_wire() -> None:
    h = open_run(None, run=1, trigger=RunTrigger.CREATED, started_at=T0)
    h = close_run(h, run=1, phase=PipelinePhase.SUCCEEDED, finished_at=T0 + timedelta(minutes=3))
    assert [dump(r) for r in h] == [
        {
            "run": 1,
            "phase": "Succeeded",
            "trigger": "Created",
            "startedAt": "2026-01-01T00:00:00Z",
            "finishedAt": "2026-01-01T00:03:00Z",
        }
    ]


def test_newest_first_and_bounded_by_the_limit() -> None:
    h = None
    for run in range(1, 8):
        h = open_run(h, run=run, trigger=RunTrigger.SCHEDULE, started_at=T0, limit=3)
    assert h is not None and [r.run for r in h] == [7, 6, 5]


def test_opening_twice_keeps_the_first_record() -> None:
    h = open_run(None, run=2, trigger=RunTrigger.RERUN, started_at=T0)
    again = open_run(h, run=2, trigger=RunTrigger.RECOVERED, started_at=T0 + timedelta(hours=1))
    assert again == h


def test_closing_again_keeps_the_finish_time_and_takes_the_latest_phase() -> None:
    h = open_run(None, run=1, trigger=RunTrigger.CREATED, started_at=T0)
    h = close_run(h, run=1, phase=PipelinePhase.DEGRADED, finished_at=T0, message="a failed")
    later = T0 + timedelta(hours=1)
    h = close_run(h, run=1, phase=PipelinePhase.SUCCEEDED, finished_at=later, message=None)
    assert (h[0].phase, h[0].finished_at, h[0].message) == (PipelinePhase.SUCCEEDED, T0, None)


def test_closing_an_unknown_run_changes_nothing_and_messages_are_cut() -> None:
    h = open_run(None, run=1, trigger=RunTrigger.CREATED, started_at=T0)
    assert close_run(h, run=9, phase=PipelinePhase.FAILED, finished_at=T0) == h
    long = close_run(h, run=1, phase=PipelinePhase.FAILED, finished_at=T0, message="x" * 5000)
    assert long[0].message is not None and len(long[0].message) == MAX_HISTORY_MESSAGE


def test_limits_and_triggers() -> None:
    assert (effective_limit(None), effective_limit(0), effective_limit(500)) == (10, 0, 50)
    assert trigger_of(adopted=True, scheduled=True, rerun=True) is RunTrigger.RECOVERED
    assert trigger_of(adopted=False, scheduled=True, rerun=True) is RunTrigger.SCHEDULE
    assert trigger_of(adopted=False, scheduled=False, rerun=True) is RunTrigger.RERUN
    assert trigger_of(adopted=False, scheduled=False, rerun=False) is RunTrigger.CREATED


@given(
    ops=st.lists(st.tuples(st.booleans(), st.integers(1, 80)), max_size=120),
    limit=st.one_of(st.none(), st.integers(0, HISTORY_LIMIT_MAX)),
)
def test_history_is_always_sorted_unique_and_bounded(
    ops: list[tuple[bool, int]], limit: int | None
) -> None:
    h: list = []
    for opening, run in ops:
        if opening:
            h = open_run(h, run=run, trigger=RunTrigger.SCHEDULE, started_at=T0, limit=limit)
        else:
            h = close_run(h, run=run, phase=PipelinePhase.SUCCEEDED, finished_at=T0, limit=limit)
    runs = [r.run for r in h]
    assert runs == sorted(set(runs), reverse=True)
    assert len(runs) <= effective_limit(limit)
