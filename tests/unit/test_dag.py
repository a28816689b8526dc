"""Unit and property tests for sluice.core.dag."""

from __future__ import annotations

import itertools
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.core import dag
from sluice.core.dag import dependents, find_cycle, format_cycle

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


# --- dependents --------------------------------------------------


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


def test_dependents_handle_ten_thousand_node_chain() -> None:
    n = 10_000
    deps = {f"t{i}": [f"t{i - 1}"] if i else [] for i in range(n)}
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
@given(random_dags(), st.data())
def test_one_back_edge_makes_find_cycle_return_a_real_cycle(
    deps: dict[str, list[str]], data: st.DataObject
) -> None:
    candidates = sorted(deps)
    if not candidates:
        return
    task = data.draw(st.sampled_from(candidates))
    # Close a loop: something task depends on (or task itself) now depends on task.
    upstream = sorted({t for t in deps if task in dependents(deps, [t])} | {task})
    back = data.draw(st.sampled_from(upstream))
    deps = {name: list(ds) for name, ds in deps.items()}
    deps[back].append(task)
    cycle = find_cycle(deps)
    assert cycle is not None
    assert_is_cycle(deps, cycle)


def test_topological_order_keeps_a_valid_declared_order() -> None:
    deps = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    assert dag.topological_order(deps) == ["a", "b", "c", "d"]


def test_topological_order_puts_dependencies_first_and_breaks_ties_by_declaration() -> None:
    deps = {"d": ["b", "c"], "c": ["a"], "b": ["a"], "a": []}
    assert dag.topological_order(deps) == ["a", "c", "b", "d"]


def test_topological_order_is_none_on_a_cycle_and_ignores_unknown_names() -> None:
    assert dag.topological_order({"a": ["b"], "b": ["a"]}) is None
    assert dag.topological_order({"a": ["ghost"], "b": ["a"]}) == ["a", "b"]


def test_ancestors_are_every_transitive_dependency_but_the_step_itself() -> None:
    deps = {"a": [], "b": ["a"], "c": ["b", "ghost"], "d": []}
    assert dag.ancestors(deps, "c") == {"a", "b"}
    assert dag.ancestors(deps, "d") == set()
