"""Unit and property tests for sluice.core.settle (skips, finally steps, outcomes)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.core import dag
from sluice.core.settle import (
    Decision,
    gate,
    main_outcome,
    progress,
    rearm_finally,
    run_phase,
    step_statuses,
)
from sluice.core.when import WhenError, WhenFalse

DEPS = {"train": [], "evaluate": ["train"], "deploy": ["evaluate"], "report": ["deploy"]}


def no_when(step: str, phases: Mapping[str, str]) -> None:
    return None


# --- gate -------------------------------------------------------------------------------------


def test_only_steps_whose_dependencies_are_done_are_decided() -> None:
    phases = {"train": "Succeeded", "evaluate": "Running", "deploy": "Pending", "report": "Pending"}
    assert gate(DEPS, phases, result_producers={}, condition=no_when) == {}
    phases["evaluate"] = "Succeeded"
    assert gate(DEPS, phases, result_producers={}, condition=no_when) == {"deploy": Decision("run")}


def test_a_false_when_skips_and_a_skipped_step_counts_as_done() -> None:
    phases = {
        "train": "Succeeded",
        "evaluate": "Succeeded",
        "deploy": "Pending",
        "report": "Pending",
    }

    def condition(step: str, phases: Mapping[str, str]) -> WhenFalse | None:
        return WhenFalse('when "x" is false') if step == "deploy" else None

    decisions = gate(DEPS, phases, result_producers={}, condition=condition)
    assert decisions == {
        "deploy": Decision("skip", "WhenFalse", 'when "x" is false'),
        # report only dependsOn deploy: it runs (in the same call)
        "report": Decision("run"),
    }


def test_skips_propagate_along_result_references_transitively() -> None:
    phases = {
        "train": "Succeeded",
        "evaluate": "Succeeded",
        "deploy": "Pending",
        "report": "Pending",
    }
    deps = {**DEPS, "audit": ["report"]}
    phases["audit"] = "Pending"

    def condition(step: str, phases: Mapping[str, str]) -> bool | None:
        return False if step == "deploy" else None

    decisions = gate(
        deps,
        phases,
        result_producers={"report": ["deploy"], "audit": ["report"]},
        condition=condition,
    )
    assert decisions["deploy"] == Decision("skip", "WhenFalse", "its when condition is false")
    assert decisions["report"] == Decision(
        "skip", "UpstreamSkipped", 'it uses results of "deploy", which was skipped'
    )
    assert decisions["audit"].reason == "UpstreamSkipped"


def test_a_when_error_fails_the_step() -> None:
    phases = {"train": "Succeeded", "evaluate": "Pending", "deploy": "Pending", "report": "Pending"}

    def condition(step: str, phases: Mapping[str, str]) -> WhenError | None:
        return WhenError("when failed: cannot convert string to double")

    decisions = gate(DEPS, phases, result_producers={}, condition=condition)
    assert decisions == {
        "evaluate": Decision("fail", "WhenError", "when failed: cannot convert string to double")
    }


def test_when_is_not_evaluated_for_a_step_skipped_upstream() -> None:
    seen: list[str] = []

    def condition(step: str, phases: Mapping[str, str]) -> bool:
        seen.append(step)
        return True

    phases = {"train": "Skipped", "evaluate": "Pending", "deploy": "Pending", "report": "Pending"}
    gate(DEPS, phases, result_producers={"evaluate": ["train"]}, condition=condition)
    assert "evaluate" not in seen


def test_finally_steps_see_main_phases_and_skip_on_missing_results() -> None:
    finally_deps: dict[str, list[str]] = {"notify": [], "publish": [], "cleanup": ["notify"]}
    phases = {
        "train": "Succeeded",
        "evaluate": "Failed",
        "deploy": "Blocked",
        "notify": "Pending",
        "publish": "Pending",
        "cleanup": "Pending",
    }
    decisions = gate(
        finally_deps,
        phases,
        result_producers={"notify": ["train"], "publish": ["evaluate"]},
        condition=no_when,
    )
    assert decisions["notify"] == Decision("run")
    assert decisions["publish"] == Decision(
        "skip", "UpstreamFailed", 'it uses results of "evaluate", which has none (failed)'
    )
    assert "cleanup" not in decisions  # waits for notify


def test_an_unknown_dependency_never_completes() -> None:
    assert gate({"a": ["ghost"]}, {"a": "Pending"}, result_producers={}, condition=no_when) == {}


# --- main outcome -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phases", "kwargs", "expected"),
    [
        (["Succeeded", "Skipped"], {}, "Succeeded"),
        ([], {}, "Succeeded"),
        (["Succeeded", "Running"], {}, None),
        (["Failed", "Blocked", "Succeeded"], {}, "Degraded"),
        (["Failed", "Running"], {}, None),
        (["Failed", "Retrying"], {}, None),
        (["Failed", "Pending"], {}, None),  # an independent step can still run
        (["Failed", "Pending"], {"stop_all": True}, "Degraded"),
        (["Running", "Pending"], {"timed_out": True}, "Timeout"),
        (["Retrying", "Succeeded"], {}, None),
    ],
)
def test_main_outcome(phases: list[str], kwargs: dict[str, bool], expected: str | None) -> None:
    assert main_outcome(phases, **kwargs) == expected


def test_step_statuses() -> None:
    assert step_statuses({"a": "Succeeded", "b": "Pending", "c": "Skipped", "d": "Failed"}) == {
        "a": "Succeeded",
        "b": "Blocked",
        "c": "Skipped",
        "d": "Failed",
    }


# --- pipeline phase ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("main", "finally_", "outcome", "expected"),
    [
        (["Running"], ["Pending"], None, (None, False)),
        (["Failed", "Running"], ["Pending"], None, ("Degraded", False)),
        (["Succeeded"], ["Running"], "Succeeded", ("Running", False)),
        (["Succeeded"], ["Succeeded", "Skipped"], "Succeeded", ("Succeeded", True)),
        (["Succeeded"], ["Failed"], "Succeeded", ("Degraded", True)),
        (["Succeeded"], ["Retrying"], "Succeeded", ("Running", False)),
        (["Succeeded"], [], "Succeeded", ("Succeeded", True)),
        (["Failed", "Blocked"], ["Running"], "Degraded", ("Degraded", False)),
        (["Failed", "Blocked"], ["Succeeded"], "Degraded", ("Degraded", True)),
        (["Failed"], ["Running"], "Timeout", ("Failed", False)),
        (["Failed"], ["Succeeded", "Failed"], "Timeout", ("Failed", True)),
    ],
)
def test_run_phase(
    main: list[str], finally_: list[str], outcome: str | None, expected: tuple[str | None, bool]
) -> None:
    assert run_phase(main, finally_, outcome) == expected  # type: ignore[arg-type]


def test_rearm_finally() -> None:
    assert not rearm_finally(None, "Degraded")  # not run yet: they simply start
    assert not rearm_finally("Degraded", "Degraded")
    assert rearm_finally("Degraded", None)  # a failed step was fixed: the run goes on
    assert rearm_finally("Degraded", "Succeeded")


def test_progress_counts_skipped_as_done() -> None:
    assert progress(["Succeeded", "Skipped", "Running"], ["Pending"]) == "2/4"
    assert progress([]) == "0/0"


# --- a whole run, simulated -------------------------------------------------------------------


@st.composite
def pipelines(
    draw: st.DrawFn,
) -> tuple[dict[str, list[str]], dict[str, list[str]], set[str], set[str]]:
    n = draw(st.integers(1, 12))
    names = [f"s{i}" for i in range(n)]
    deps: dict[str, list[str]] = {}
    producers: dict[str, list[str]] = {}
    for i, name in enumerate(names):
        earlier = names[:i]
        chosen = draw(st.lists(st.sampled_from(earlier), unique=True)) if earlier else []
        deps[name] = chosen
        # results come from some of the dependencies (a reference is a dependency)
        producers[name] = draw(st.lists(st.sampled_from(chosen), unique=True)) if chosen else []
    false_when = set(draw(st.lists(st.sampled_from(names), unique=True)))
    failing = set(draw(st.lists(st.sampled_from(names), unique=True)))
    order = draw(st.permutations(names))  # declared order need not be topological
    return {n: deps[n] for n in order}, producers, false_when, failing


@settings(max_examples=300, deadline=None)
@given(pipelines())
def test_a_simulated_run_settles_with_the_documented_rules(
    pipeline: tuple[dict[str, list[str]], dict[str, list[str]], set[str], set[str]],
) -> None:
    deps, producers, false_when, failing = pipeline
    phases = dict.fromkeys(deps, "Pending")
    reasons: dict[str, str] = {}

    def condition(step: str, now: Mapping[str, str]) -> bool:
        return step not in false_when

    for _ in range(len(deps) + 1):
        decisions = gate(deps, phases, result_producers=producers, condition=condition)
        before = dict(phases)
        for step, decision in decisions.items():
            # decided only once every dependency was done, or skipped in this same call
            for d in deps[step]:
                skipped_now = d in decisions and decisions[d].action == "skip"
                assert before[d] in ("Succeeded", "Skipped") or skipped_now
            if decision.action == "run":
                phases[step] = "Failed" if step in failing else "Succeeded"
            else:
                phases[step] = "Skipped"
                assert decision.reason is not None
                reasons[step] = decision.reason
        for blocked in dag.dependents(deps, {s for s, p in phases.items() if p == "Failed"}):
            if phases[blocked] == "Pending":
                phases[blocked] = "Blocked"
        if not decisions:
            break

    assert "Pending" not in phases.values()
    for step, phase in phases.items():
        if phase == "Skipped":
            upstream = any(phases[p] == "Skipped" for p in producers[step])
            assert reasons[step] == ("UpstreamSkipped" if upstream else "WhenFalse")
        if phase == "Succeeded":
            assert step not in false_when
            assert all(phases[p] == "Succeeded" for p in producers[step])
        if phase == "Blocked":
            assert dag.ancestors(deps, step) & {s for s, p in phases.items() if p == "Failed"}
    outcome = main_outcome(list(phases.values()))
    assert outcome == ("Degraded" if "Failed" in phases.values() else "Succeeded")
    assert progress(list(phases.values())) == (
        f"{sum(p in ('Succeeded', 'Skipped') for p in phases.values())}/{len(phases)}"
    )
