"""Unit and property tests for sluice.core.matrix_status: a matrixed step's outcome, its
compact status, progress and which combinations may start (issue 15)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.api import MatrixStatus, TaskPhase, dump
from sluice.api.matrix import MAX_MATRIX_DETAILS
from sluice.core import naming
from sluice.core.matrix_status import (
    Combination,
    Demand,
    admit,
    format_ranges,
    jobs_by_combination,
    parse_ranges,
    progress,
    running_counts,
    step_phase,
    still_to_settle,
    summarize,
)
from sluice.core.observe import observe_job

P, R, RT, S, F = (
    TaskPhase.PENDING,
    TaskPhase.RUNNING,
    TaskPhase.RETRYING,
    TaskPhase.SUCCEEDED,
    TaskPhase.FAILED,
)
PHASES = [P, R, RT, S, F]


def _combos(*phases: TaskPhase) -> list[Combination]:
    return [Combination(i, p) for i, p in enumerate(phases)]


# --- the step's outcome ----------------------------------------------------------


def test_without_min_success_all_must_succeed() -> None:
    assert step_phase(_combos(S, S, S), 3) is S
    assert step_phase(_combos(S, R, S), 3) is R


def test_without_min_success_one_failure_fails_the_step_while_others_finish() -> None:
    combos = _combos(S, F, R, P)
    assert step_phase(combos, 4) is F
    assert still_to_settle(combos) == [2, 3]


def test_min_success_waits_for_every_other_to_settle() -> None:
    assert step_phase(_combos(S, S, S, R), 3) is R  # enough succeeded, one still running
    assert step_phase(_combos(S, S, S, F), 3) is S
    assert step_phase(_combos(S, S, F, F), 3) is F  # 2 can succeed at most
    assert step_phase(_combos(S, F, R, RT), 3) is R  # still possible


def test_an_empty_matrix_succeeds_at_once() -> None:
    assert step_phase([], 0) is S


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(PHASES), max_size=30), st.data())
def test_the_outcome_rule(phases: list[TaskPhase], data: st.DataObject) -> None:
    combos = _combos(*phases)
    required = data.draw(st.integers(0, len(combos)))
    got = step_phase(combos, required)
    ok, bad = phases.count(S), phases.count(F)
    settled = ok + bad == len(phases)
    if got is S:
        assert ok >= required and settled
    elif got is F:
        assert len(phases) - bad < required
    else:
        assert got is R and not settled and len(phases) - bad >= required
    # Monotone: a combination failing never turns a failed step back.
    if got is F:
        for i, p in enumerate(phases):
            if p is not F:
                worse = [*phases[:i], F, *phases[i + 1 :]]
                assert step_phase(_combos(*worse), required) is F


# --- ranges -------------------------------------------------------------------------


def test_ranges() -> None:
    assert format_ranges([]) == ""
    assert format_ranges([3, 0, 1, 2, 40, 5, 6]) == "0-3,5-6,40"
    assert parse_ranges("0-3,5-6,40") == {0, 1, 2, 3, 5, 6, 40}


def test_parse_ranges_is_total_and_bounded_by_the_width() -> None:
    assert parse_ranges(None) == set()
    assert parse_ranges("x,1,3-a,-2,4-5,") == {1, 4, 5}
    assert parse_ranges("0-999999999", width=3) == {0, 1, 2}


@given(st.sets(st.integers(0, 2000), max_size=300))
def test_ranges_round_trip(indexes: set[int]) -> None:
    assert parse_ranges(format_ranges(indexes)) == indexes


# --- the compact status --------------------------------------------------------------


def test_summary_counts_and_details_failed_first_then_retrying_then_running() -> None:
    combos = [
        Combination(0, S),
        Combination(1, R, 1, job="j-c1-1-1"),
        Combination(2, F, 3, job="j-c2-1-3", reason="Error", message="exit 1"),
        Combination(3, P),
        Combination(4, RT, 2, reason="OOMKilled"),
        Combination(5, S),
    ]
    m = summarize(combos)
    assert (m.width, m.pending, m.running, m.retrying, m.succeeded, m.failed) == (6, 1, 1, 1, 2, 1)
    assert m.done == "0,5"
    assert [(d.index, d.phase) for d in m.details] == [(2, F), (4, RT), (1, R)]
    assert dump(m)["details"][0] == {
        "index": 2,
        "phase": "Failed",
        "attempts": 3,
        "job": "j-c2-1-3",
        "reason": "Error",
        "message": "exit 1",
    }


def test_summary_messages_are_shortened() -> None:
    m = summarize([Combination(0, F, message="x" * 5000)])
    assert m.details[0].message is not None and len(m.details[0].message) == 256


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(PHASES), min_size=0, max_size=2000))
def test_the_status_stays_small_however_wide_the_matrix(phases: list[TaskPhase]) -> None:
    m = summarize(_combos(*phases))
    assert len(m.details) <= MAX_MATRIX_DETAILS
    assert m.width == len(phases)
    assert m.pending + m.running + m.retrying + m.succeeded + m.failed == len(phases)
    assert parse_ranges(m.done) == {i for i, p in enumerate(phases) if p is S}
    # A model the API accepts, round trip.
    assert MatrixStatus.model_validate(dump(m)) == m


def test_a_256_wide_step_in_progress_is_a_few_hundred_bytes() -> None:
    phases = [S] * 200 + [R] * 40 + [F] * 6 + [P] * 10
    text = json.dumps(dump(summarize(_combos(*phases))))
    assert len(text) < 2500, len(text)


# --- progress ---------------------------------------------------------------------------


def test_progress_counts_combinations() -> None:
    sweep = MatrixStatus(width=256, succeeded=35, running=10, pending=211)
    assert progress([(S, None), (S, None), (R, sweep), (P, None)]) == "37/259"


def test_progress_counts_a_matrix_of_unknown_width_as_one() -> None:
    assert progress([(S, None), (P, MatrixStatus()), (P, None)]) == "1/3"


# --- admission -------------------------------------------------------------------------


def test_admit_respects_the_matrix_cap_and_the_pipeline_cap() -> None:
    demands = [
        Demand("sweep", list(range(100)), running=2, max_parallel=5),
        Demand("plain", [0]),
    ]
    assert admit(demands, running=2, max_parallel=None) == {"sweep": [0, 1, 2], "plain": [0]}
    assert admit(demands, running=2, max_parallel=4) == {"sweep": [0, 1]}
    assert admit(demands, running=4, max_parallel=4) == {}


def test_admit_keeps_the_candidates_order() -> None:
    # Due retries first (the caller orders them), then pending ones by index.
    got = admit([Demand("s", [7, 3, 0, 1, 2])], running=0, max_parallel=3)
    assert got == {"s": [7, 3, 0]}


def test_running_counts_add_combinations_to_plain_steps() -> None:
    assert running_counts({"a": None, "b": MatrixStatus(width=9, running=4)}, 2) == 6


demand_lists = st.lists(
    st.tuples(
        st.lists(st.integers(0, 500), max_size=40, unique=True),
        st.integers(0, 20),
        st.none() | st.integers(1, 20),
    ),
    max_size=6,
).map(lambda ds: [Demand(f"s{i}", c, r, m) for i, (c, r, m) in enumerate(ds)])


@settings(max_examples=150, deadline=None)
@given(demand_lists, st.none() | st.integers(1, 50), st.integers(0, 60))
def test_max_parallel_is_never_exceeded(
    demands: list[Demand], max_parallel: int | None, extra_running: int
) -> None:
    running = extra_running + sum(d.running for d in demands)
    got = admit(demands, running=running, max_parallel=max_parallel)
    started = sum(len(v) for v in got.values())
    if max_parallel is not None:
        # Never more running than the cap (none started when it is already reached).
        assert started <= max(0, max_parallel - running)
    for d in demands:
        taken = got.get(d.step, [])
        assert taken == list(d.candidates[: len(taken)])  # a prefix, in order
        if d.max_parallel is not None:
            assert d.running + len(taken) <= max(d.max_parallel, d.running)
            assert not taken or d.running + len(taken) <= d.max_parallel


@settings(max_examples=100, deadline=None)
@given(demand_lists, st.none() | st.integers(1, 50))
def test_admit_is_work_conserving(demands: list[Demand], max_parallel: int | None) -> None:
    # Whatever is left out had no room: its own cap or the pipeline's was reached.
    got = admit(demands, running=0, max_parallel=max_parallel)
    started = sum(len(v) for v in got.values())
    if max_parallel is not None and started >= max_parallel:
        return
    for d in demands:
        taken = got.get(d.step, [])
        own_room = float("inf") if d.max_parallel is None else d.max_parallel - d.running
        assert len(taken) == max(0, min(len(d.candidates), own_room))


# --- the Jobs of a matrixed step ---------------------------------------------------------


def _job(combination: int | None, attempt: int, *, label: str | None = None) -> dict[str, Any]:
    labels = naming.job_labels("sweep", "train", 1, attempt, combination)
    if label is not None:
        labels[naming.LABEL_COMBINATION] = label
    return {
        "metadata": {
            "name": naming.job_name("sweep", "train", 1, attempt, combination),
            "labels": labels,
            "annotations": naming.job_annotations("sweep", "train", "h"),
        },
        "status": {"conditions": [{"type": "Complete", "status": "True"}]},
    }


def test_the_job_view_reads_the_combination_label() -> None:
    assert (view := observe_job(_job(17, 2))) is not None and view.combination == 17
    assert (plain := observe_job(_job(None, 1))) is not None and plain.combination is None
    for bad in ("-1", "x", "", "1.0"):
        got = observe_job(_job(None, 1, label=bad))
        assert got is not None and got.combination is None


def test_jobs_by_combination_groups_by_index_and_orders_by_attempt() -> None:
    views = [
        v
        for j in (_job(1, 2), _job(0, 1), _job(1, 1), _job(None, 1), _job(9, 1))
        if (v := observe_job(j)) is not None
    ]
    got = jobs_by_combination(views, width=4)
    assert sorted(got) == [0, 1]
    assert [v.attempt for v in got[1]] == [1, 2]
    assert got[0][0].name.endswith("-c0-1-1")
