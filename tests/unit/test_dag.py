"""Unit and property tests for sluice.core.dag."""

from __future__ import annotations

import itertools
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.core.dag import (
    DagError,
    ancestors,
    dependents,
    find_cycle,
    format_cycle,
    ready,
    topological_order,
    unknown_dependencies,
    validate,
)

# The README example: a chain with a side branch.
CHURN: dict[str, list[str]] = {
    "ingest": [],
    "validate": ["ingest"],
    "preprocess": ["validate"],
    "train": ["preprocess"],
    "evaluate": ["train"],
    "register": ["evaluate"],
    "report": ["ingest"],
}


def assert_is_cycle(deps: dict[str, list[str]], cycle: list[str]) -> None:
    assert len(cycle) >= 2
    assert cycle[0] == cycle[-1]
    body = cycle[:-1]
    assert len(set(body)) == len(body), "a cycle visits each task once"
    assert cycle[0] == min(body)
    for task, dep in itertools.pairwise(cycle):
        assert dep in deps[task], f"{task} -> {dep} is not an edge"


# --- unknown_dependencies ----------------------------------------------------


def test_unknown_dependencies_are_reported_as_sorted_pairs() -> None:
    deps = {"b": ["zz", "a"], "a": ["x"], "c": ["b"]}
    assert unknown_dependencies(deps) == [("a", "x"), ("b", "zz")]


def test_unknown_dependency_listed_twice_is_reported_once() -> None:
    assert unknown_dependencies({"a": ["x", "x"]}) == [("a", "x")]


def test_known_graph_has_no_unknown_dependencies() -> None:
    assert unknown_dependencies(CHURN) == []
    assert unknown_dependencies({}) == []


# --- find_cycle / format_cycle -----------------------------------------------


def test_acyclic_graph_has_no_cycle() -> None:
    assert find_cycle(CHURN) is None
    assert find_cycle({}) is None


def test_two_task_cycle_repeats_first_name_at_end() -> None:
    assert find_cycle({"extract": ["clean"], "clean": ["extract"]}) == [
        "clean",
        "extract",
        "clean",
    ]


def test_cycle_is_named_starting_at_smallest_member() -> None:
    deps = {"x": ["y"], "y": ["z"], "z": ["m"], "m": ["x"], "start": ["x"]}
    assert find_cycle(deps) == ["m", "x", "y", "z", "m"]


def test_cycle_follows_depends_on_edges() -> None:
    # "extract" depends on "clean": the arrow reads "depends on".
    deps = {"extract": ["load"], "clean": ["extract"], "load": ["clean"]}
    cycle = find_cycle(deps)
    assert cycle == ["clean", "extract", "load", "clean"]
    assert cycle is not None
    assert_is_cycle(deps, cycle)


def test_self_loop_is_a_cycle_of_one() -> None:
    assert find_cycle({"a": ["a"]}) == ["a", "a"]
    assert find_cycle({"b": [], "a": ["b", "a"]}) == ["a", "a"]


def test_find_cycle_ignores_unknown_names() -> None:
    assert find_cycle({"a": ["ghost"], "b": ["a", "phantom"]}) is None


def test_cycle_does_not_include_the_path_leading_into_it() -> None:
    deps = {"a": ["b"], "b": ["c"], "c": ["d"], "d": ["c"]}
    assert find_cycle(deps) == ["c", "d", "c"]


def test_find_cycle_does_not_depend_on_declaration_order() -> None:
    one = {"a": ["b", "c"], "b": ["a"], "c": ["a"]}
    two = {"c": ["a"], "b": ["a"], "a": ["c", "b"]}
    assert find_cycle(one) == find_cycle(two) == ["a", "b", "a"]


def test_find_cycle_handles_ten_thousand_node_chain_without_recursion() -> None:
    n = 10_000
    assert n > sys.getrecursionlimit()
    deps = {f"t{i:05d}": [f"t{i - 1:05d}"] if i else [] for i in range(n)}
    assert find_cycle(deps) is None
    deps["t00000"] = [f"t{n - 1:05d}"]
    cycle = find_cycle(deps)
    assert cycle is not None
    assert len(cycle) == n + 1
    assert_is_cycle(deps, cycle)


def test_format_cycle_joins_with_arrows() -> None:
    assert format_cycle(["extract", "clean", "extract"]) == "extract -> clean -> extract"
    assert format_cycle(["a", "a"]) == "a -> a"


# --- validate ----------------------------------------------------------------


def test_validate_accepts_valid_graph() -> None:
    validate(CHURN)
    validate({})


def test_validate_names_unknown_dependency() -> None:
    with pytest.raises(DagError, match=r'^task "b" depends on unknown task "x"$') as info:
        validate({"a": [], "b": ["a", "x"]})
    assert info.value.unknown == [("b", "x")]
    assert info.value.cycle is None


def test_validate_lists_every_unknown_dependency() -> None:
    with pytest.raises(DagError) as info:
        validate({"b": ["y", "x"], "a": ["z"]})
    assert str(info.value) == (
        'task "a" depends on unknown task "z"; '
        'task "b" depends on unknown task "x"; '
        'task "b" depends on unknown task "y"'
    )


def test_validate_names_the_cycle() -> None:
    with pytest.raises(DagError, match=r"^cycle: a -> b -> a$") as info:
        validate({"a": ["b"], "b": ["a"]})
    assert info.value.cycle == ["a", "b", "a"]
    assert info.value.unknown == []


def test_validate_reports_unknown_dependencies_and_cycle_together() -> None:
    with pytest.raises(DagError) as info:
        validate({"a": ["b", "x"], "b": ["a"]})
    assert str(info.value) == 'task "a" depends on unknown task "x"; cycle: a -> b -> a'


def test_dag_error_is_a_value_error() -> None:
    assert issubclass(DagError, ValueError)


# --- topological_order -------------------------------------------------------


def test_topological_order_keeps_declared_order_when_it_is_valid() -> None:
    assert topological_order(CHURN) == list(CHURN)


def test_topological_order_puts_dependencies_first() -> None:
    deps = {"train": ["prep"], "prep": ["ingest"], "ingest": []}
    assert topological_order(deps) == ["ingest", "prep", "train"]


def test_topological_order_breaks_ties_by_declared_order() -> None:
    deps = {"c": [], "a": ["c"], "b": [], "d": ["b"]}
    # After "c", both "a" (declared 2nd) and "b" (3rd) are ready: "a" goes first.
    assert topological_order(deps) == ["c", "a", "b", "d"]


def test_topological_order_emits_a_task_as_soon_as_it_is_earliest_ready() -> None:
    deps = {"z": ["y"], "y": [], "x": []}
    assert topological_order(deps) == ["y", "z", "x"]


def test_topological_order_ignores_unknown_and_duplicate_dependencies() -> None:
    assert topological_order({"b": ["a", "a", "ghost"], "a": []}) == ["a", "b"]


def test_topological_order_raises_on_cycle_with_its_name() -> None:
    with pytest.raises(DagError, match=r"^cycle: b -> c -> b$") as info:
        topological_order({"a": [], "b": ["a", "c"], "c": ["b"]})
    assert info.value.cycle == ["b", "c", "b"]


def test_topological_order_raises_on_self_loop() -> None:
    with pytest.raises(DagError, match=r"^cycle: a -> a$"):
        topological_order({"a": ["a"]})


def test_topological_order_of_empty_graph_is_empty() -> None:
    assert topological_order({}) == []


def test_topological_order_handles_ten_thousand_tasks() -> None:
    n = 10_000
    # Declared backwards so every task has to wait for the next one declared.
    deps = {f"t{i}": [f"t{i - 1}"] if i else [] for i in reversed(range(n))}
    assert topological_order(deps) == [f"t{i}" for i in range(n)]


# --- ready -------------------------------------------------------------------


def test_ready_starts_with_tasks_without_dependencies() -> None:
    assert ready(CHURN, set(), set()) == ["ingest"]


def test_ready_returns_tasks_whose_dependencies_all_succeeded_in_declared_order() -> None:
    assert ready(CHURN, {"ingest"}, {"ingest"}) == ["validate", "report"]


def test_ready_excludes_started_tasks() -> None:
    assert ready(CHURN, {"ingest"}, {"ingest", "validate"}) == ["report"]


def test_ready_excludes_succeeded_tasks_even_if_not_marked_started() -> None:
    assert ready({"a": []}, {"a"}, set()) == []


def test_ready_waits_for_every_dependency() -> None:
    deps = {"a": [], "b": [], "c": ["a", "b"]}
    assert ready(deps, {"a"}, {"a", "b"}) == []
    assert ready(deps, {"a", "b"}, {"a", "b"}) == ["c"]


def test_ready_does_not_treat_started_as_succeeded() -> None:
    assert ready({"a": [], "b": ["a"]}, set(), {"a"}) == []


def test_task_with_unknown_dependency_is_never_ready() -> None:
    assert ready({"a": ["ghost"]}, set(), set()) == []


# --- dependents / ancestors --------------------------------------------------


def test_dependents_are_transitive() -> None:
    assert dependents(CHURN, ["preprocess"]) == {"train", "evaluate", "register"}
    assert dependents(CHURN, ["ingest"]) == set(CHURN) - {"ingest"}


def test_dependents_of_leaf_is_empty() -> None:
    assert dependents(CHURN, ["register"]) == set()
    assert dependents(CHURN, []) == set()


def test_dependents_exclude_the_given_names_even_if_they_depend_on_each_other() -> None:
    assert dependents(CHURN, ["validate", "train"]) == {"preprocess", "evaluate", "register"}


def test_dependents_of_several_names_is_the_union() -> None:
    assert dependents(CHURN, ["evaluate", "report"]) == {"register"}


def test_dependents_terminate_on_cycles() -> None:
    deps = {"a": ["b"], "b": ["a"], "c": ["a"]}
    assert dependents(deps, ["a"]) == {"b", "c"}


def test_ancestors_are_transitive_dependencies() -> None:
    assert ancestors(CHURN, "train") == {"preprocess", "validate", "ingest"}
    assert ancestors(CHURN, "report") == {"ingest"}
    assert ancestors(CHURN, "ingest") == set()


def test_ancestors_skip_unknown_names_and_terminate_on_cycles() -> None:
    deps = {"a": ["b", "ghost"], "b": ["a"]}
    assert ancestors(deps, "a") == {"b"}
    assert ancestors(deps, "nope") == set()


def test_ancestors_and_dependents_handle_ten_thousand_node_chain() -> None:
    n = 10_000
    deps = {f"t{i}": [f"t{i - 1}"] if i else [] for i in range(n)}
    assert len(ancestors(deps, f"t{n - 1}")) == n - 1
    assert len(dependents(deps, ["t0"])) == n - 1


# --- properties --------------------------------------------------------------


@st.composite
def random_dags(draw: st.DrawFn) -> dict[str, list[str]]:
    """Acyclic by construction (edges only to earlier nodes), then relabelled and reordered."""
    n = draw(st.integers(min_value=0, max_value=25))
    names = [f"t{k}" for k in draw(st.permutations(range(n)))]
    edges = [draw(st.lists(st.integers(0, i - 1), max_size=4)) if i else [] for i in range(n)]
    declared = draw(st.permutations(range(n)))
    return {names[i]: [names[j] for j in edges[i]] for i in declared}


@settings(max_examples=100, deadline=None)
@given(random_dags())
def test_topological_order_puts_every_task_after_its_dependencies(
    deps: dict[str, list[str]],
) -> None:
    order = topological_order(deps)
    assert sorted(order) == sorted(deps)
    position = {name: i for i, name in enumerate(order)}
    for task, names in deps.items():
        for dep in names:
            assert position[dep] < position[task]
    assert find_cycle(deps) is None
    validate(deps)


@settings(max_examples=100, deadline=None)
@given(random_dags())
def test_topological_order_of_an_already_ordered_declaration_is_unchanged(
    deps: dict[str, list[str]],
) -> None:
    reordered = {name: deps[name] for name in topological_order(deps)}
    assert topological_order(reordered) == list(reordered)


@settings(max_examples=100, deadline=None)
@given(random_dags(), st.data())
def test_one_back_edge_makes_find_cycle_return_a_real_cycle(
    deps: dict[str, list[str]], data: st.DataObject
) -> None:
    candidates = sorted(deps)
    if not candidates:
        return
    task = data.draw(st.sampled_from(candidates))
    # Close a loop: something task depends on (or task itself) now depends on task.
    upstream = sorted(ancestors(deps, task) | {task})
    back = data.draw(st.sampled_from(upstream))
    deps = {name: list(ds) for name, ds in deps.items()}
    deps[back].append(task)
    cycle = find_cycle(deps)
    assert cycle is not None
    assert_is_cycle(deps, cycle)
    with pytest.raises(DagError, match=r"^cycle: "):
        topological_order(deps)
    with pytest.raises(DagError):
        validate(deps)


@settings(max_examples=100, deadline=None)
@given(random_dags(), st.data())
def test_dependents_and_ancestors_are_mirror_images(
    deps: dict[str, list[str]], data: st.DataObject
) -> None:
    if not deps:
        return
    name = data.draw(st.sampled_from(sorted(deps)))
    assert dependents(deps, [name]) == {t for t in deps if name in ancestors(deps, t)}


@settings(max_examples=100, deadline=None)
@given(random_dags(), st.data())
def test_running_ready_tasks_to_completion_runs_everything_in_dependency_order(
    deps: dict[str, list[str]], data: st.DataObject
) -> None:
    succeeded: set[str] = set()
    started: set[str] = set()
    while True:
        batch = ready(deps, succeeded, started)
        if not batch:
            break
        for task in batch:
            assert ancestors(deps, task) <= succeeded
        # Start a non-empty prefix (as maxParallel would); all of it succeeds.
        chosen = batch[: data.draw(st.integers(1, len(batch)))]
        started |= set(chosen)
        succeeded |= set(chosen)
    assert succeeded == set(deps)
