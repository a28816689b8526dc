"""Unit and property tests for sluice.core.references."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.core import dag
from sluice.core.references import (
    MissingValueError,
    Ref,
    check,
    find,
    format_cycle,
    has_malformed,
    implicit_dependencies,
    iter_texts,
    kubelet_escape,
    merged_dependencies,
    reference_cycle,
    result_text,
    step_refs,
    substitute,
)

URI = Ref.result("train", "model-uri")
AUC = Ref.result("evaluate", "auc")

# --- find -------------------------------------------------------------------------------------


def test_finds_every_kind_in_order_once() -> None:
    text = (
        "--model=$(tasks.train.results.model-uri) --auc=$(tasks.evaluate.results.auc) "
        "$(tasks.status) $(tasks.train.status) $(tasks.train.results.model-uri)"
    )
    assert find(text) == [URI, AUC, Ref.run_status(), Ref.status("train")]


@pytest.mark.parametrize(
    "text",
    [
        "$(tasks.Train.results.x)",
        "$(tasks.train.results)",
        "$(tasks.train.result.x)",
        "$(tasks.-a.results.x)",
        "$(tasks.a.results.x-)",
        "$(tasks.a.phase)",  # a phase is a CEL variable of a when, not text
        "$(tasks.a.results.x",
        "$(params.x)",
    ],
)
def test_malformed_are_not_references(text: str) -> None:
    assert find(text) == []


def test_malformed_are_noticed() -> None:
    assert has_malformed("x $(tasks.Train.results.a)")
    assert not has_malformed("$(tasks.train.results.a) and $(tasks.status)")
    assert not has_malformed("no references")


def test_ref_spellings() -> None:
    assert URI.text == "$(tasks.train.results.model-uri)"
    assert URI.dotted == "tasks.train.results.model-uri"
    assert Ref.run_status().text == "$(tasks.status)"
    assert Ref.status("a").text == "$(tasks.a.status)"
    assert Ref.phase("a").dotted == "tasks.a.phase"
    assert Ref.param("a.b").path == ("params", "a.b")


def test_step_refs_name_the_field() -> None:
    texts = iter_texts(
        ["python", "$(tasks.train.results.model-uri)"],
        ["--auc", "$(tasks.evaluate.results.auc)"],
        [{"name": "URI", "value": "$(tasks.train.results.model-uri)"}, {"name": "X"}],
        params=[("data", "$(tasks.status)")],
    )
    assert step_refs(texts) == [
        ('parameter "data"', Ref.run_status()),
        ("command[1]", URI),
        ("args[1]", AUC),
        ('env "URI"', URI),
    ]


# --- graph ------------------------------------------------------------------------------------


def test_implicit_dependencies_are_the_producers() -> None:
    refs = {
        "register": [URI, AUC, URI, Ref.param("x")],
        "notify": [Ref.run_status(), Ref.status("train")],
        "self": [Ref.result("self", "x")],
    }
    assert implicit_dependencies(refs) == {
        "register": ["train", "evaluate"],
        "notify": ["train"],
        "self": [],
    }


def test_merged_keeps_step_order_and_each_edge_once() -> None:
    explicit = {"a": [], "b": ["a"], "c": ["a"]}
    implicit = {"c": ["b", "a"], "zzz": ["a"]}
    assert merged_dependencies(explicit, implicit) == {"a": [], "b": ["a"], "c": ["a", "b"]}


def test_a_cycle_through_references_is_named_with_its_implicit_edges() -> None:
    explicit = {"train": ["evaluate"], "evaluate": []}
    implicit = {"evaluate": ["train"]}
    found = reference_cycle(explicit, implicit)
    assert found is not None
    cycle, edges = found
    assert cycle == ["evaluate", "train", "evaluate"]
    assert edges == [("evaluate", "train")]
    assert format_cycle(cycle, edges) == (
        'cycle: evaluate -> train -> evaluate ("evaluate" refers to "train")'
    )


def test_no_reference_cycle_when_depends_on_already_has_one() -> None:
    # validation reports that one, with dag's own message
    assert reference_cycle({"a": ["b"], "b": ["a"]}, {"a": ["b"]}) is None
    assert reference_cycle({"a": [], "b": []}, {"b": ["a"]}) is None


graphs = st.integers(min_value=1, max_value=8).flatmap(
    lambda n: st.tuples(
        st.just([f"s{i}" for i in range(n)]),
        st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=3 * n),
        st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=3 * n),
    )
)


@given(graphs)
def test_reference_cycle_is_a_real_cycle_of_the_merged_graph(
    graph: tuple[list[str], list[tuple[int, int]], list[tuple[int, int]]],
) -> None:
    names, explicit_edges, implicit_edges = graph
    explicit: dict[str, list[str]] = {n: [] for n in names}
    for a, b in explicit_edges:
        if a != b and names[b] not in explicit[names[a]]:
            explicit[names[a]].append(names[b])
    implicit: dict[str, list[str]] = {}
    for a, b in implicit_edges:
        implicit.setdefault(names[a], []).append(names[b])
    found = reference_cycle(explicit, implicit)
    merged = merged_dependencies(explicit, implicit)
    if dag.find_cycle(explicit) is not None:
        assert found is None
        return
    if found is None:
        assert dag.find_cycle(merged) is None
        return
    cycle, edges = found
    assert cycle[0] == cycle[-1]
    for a, b in itertools.pairwise(cycle):
        assert b in merged[a]
    assert edges  # dependsOn alone is acyclic, so some edge is a reference
    for a, b in edges:
        assert b in implicit[a] and b not in explicit[a]


# --- check ------------------------------------------------------------------------------------

MAIN = ["train", "evaluate", "register"]
FINALLY = ["notify", "cleanup"]
RESULTS: dict[str, list[str] | None] = {
    "train": ["model-uri"],
    "evaluate": ["auc"],
    "register": None,  # its Task is not applied yet
    "notify": [],
    "cleanup": ["done"],
}


def problems(step: str, *refs: Ref, where: str = "args[0]") -> list[str]:
    found = check(
        main=MAIN,
        finally_=FINALLY,
        refs={step: [(where, r) for r in refs]},
        results=RESULTS,
        external={"evaluate": True},
    )
    return [p.message for p in found]


def test_valid_references_have_no_problem() -> None:
    assert problems("evaluate", URI) == []
    assert problems("register", URI, AUC) == []
    assert problems("notify", URI, Ref.run_status(), Ref.status("train")) == []
    assert problems("notify", Ref.result("cleanup", "done")) == []
    assert problems("train", Ref.result("register", "anything")) == []  # not checkable yet


@pytest.mark.parametrize(
    ("step", "ref", "fragment"),
    [
        (
            "register",
            Ref.result("trian", "model-uri"),
            'task "register": args[0] uses $(tasks.trian.results.model-uri), but there is no '
            'task "trian" (did you mean "train"?)',
        ),
        (
            "register",
            Ref.result("train", "model-url"),
            'but task "train" declares no result "model-url" (it declares "model-uri") '
            '(did you mean "model-uri"?)',
        ),
        ("register", Ref.result("notify", "x"), '"notify" is a finally task'),
        ("register", Ref.phase("notify"), '"notify" is a finally task'),
        ("register", Ref.run_status(), "only finally tasks can use"),
        ("register", Ref.status("train"), "only finally tasks can use"),
        ("notify", Ref.status("cleanup"), "is the status of a main task"),
        ("train", Ref.result("train", "model-uri"), "a task cannot refer to itself"),
        ("notify", Ref.result("notify", "x"), "a task cannot refer to itself"),
        (
            "cleanup",
            Ref.result("notify", "x"),
            'task "notify" declares no result "x" (it declares none)',
        ),
    ],
)
def test_problems_name_the_step_and_the_problem(step: str, ref: Ref, fragment: str) -> None:
    found = problems(step, ref)
    assert len(found) == 1
    assert fragment in found[0]


def test_undeclared_result_of_a_task_object_is_external() -> None:
    [p] = check(
        main=MAIN,
        refs={"register": [("when", Ref.result("evaluate", "acc"))]},
        results=RESULTS,
        external={"evaluate": True},
    )
    assert p.external and p.step == "register" and p.severity == "error"


def test_depends_on_rules_between_main_and_finally() -> None:
    found = check(
        main=MAIN,
        finally_=FINALLY,
        refs={},
        results=RESULTS,
        depends_on={"register": ["train", "notify"], "cleanup": ["notify", "train"]},
    )
    assert [p.step for p in found] == ["register", "cleanup"]
    assert 'depends on finally task "notify"' in found[0].message
    assert 'is a finally task and depends on main task "train"' in found[1].message


# --- substitution -----------------------------------------------------------------------------


def test_substitutes_results_and_params_in_one_pass() -> None:
    values = {URI: "s3://m/$(params.secret)", AUC: "0.9"}
    text = (
        "--model=$(tasks.train.results.model-uri) --auc=$(tasks.evaluate.results.auc) $(params.x)"
    )
    out = substitute(
        text, values, {"x": "$(tasks.evaluate.results.auc)", "secret": "no"}, kubelet=False
    )
    # Inserted values are never scanned again: neither the result's $(params.secret) nor the
    # param's $(tasks....) is replaced.
    assert out == "--model=s3://m/$(params.secret) --auc=0.9 $(tasks.evaluate.results.auc)"


def test_params_are_left_alone_without_params() -> None:
    assert substitute(
        "$(params.x) $(tasks.status)", {Ref.run_status(): "Degraded"}, kubelet=False
    ) == ("$(params.x) Degraded")


def test_kubelet_escaping_doubles_dollars_of_values_only() -> None:
    out = substitute("$$(KEEP) $(tasks.status)", {Ref.run_status(): "$(HOME)$"}, kubelet=True)
    assert out == "$$(KEEP) $$(HOME)$$"


def test_missing_values_are_all_named() -> None:
    with pytest.raises(MissingValueError) as err:
        substitute("$(tasks.a.results.x) $(params.p) $(tasks.status)", {}, {}, kubelet=True)
    assert str(err.value) == "no value for $(params.p), $(tasks.a.results.x), $(tasks.status)"


def test_result_text_of_a_matrixed_step_is_a_json_array() -> None:
    assert result_text("0.9") == "0.9"
    assert result_text(["0.91", "0.88"]) == '["0.91","0.88"]'
    assert result_text([]) == "[]"
    assert result_text(['é"x']) == '["é\\"x"]'


def kubelet_expand(text: str, env: Callable[[str], str | None]) -> str:
    """The kubelet's $(VAR) expansion (k8s.io/kubernetes third_party/forked/golang/expansion)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end >= 0:
                    name = text[i + 2 : end]
                    value = env(name)
                    out.append(value if value is not None else f"$({name})")
                    i = end + 1
                    continue
                out.append("$(")
                i += 2
                continue
            out.append("$" + nxt)
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


dollar_text = st.text(alphabet=st.sampled_from(list("$()ab_ ")), max_size=30)


@given(dollar_text)
def test_the_container_gets_a_result_verbatim_through_kubelet_expansion(value: str) -> None:
    def env(name: str) -> str | None:
        return "EXPANDED" if name in ("a", "b", "HOME") else None

    assert kubelet_expand(kubelet_escape(value), env) == value
    text = substitute("pre $(tasks.t.results.r) post", {Ref.result("t", "r"): value}, kubelet=True)
    assert kubelet_expand(text, env) == f"pre {value} post"


labels = st.from_regex(r"[a-z]([-a-z0-9]{0,6}[a-z0-9])?", fullmatch=True)
refs = st.one_of(
    st.just(Ref.run_status()),
    labels.map(Ref.status),
    st.tuples(labels, labels).map(lambda t: Ref.result(*t)),
)
pieces = st.lists(st.one_of(refs, st.text(alphabet=st.sampled_from(list("$(). xz")), max_size=8)))


@given(pieces, st.data())
def test_substitution_is_a_single_verbatim_pass(
    parts: list[Ref | str], data: st.DataObject
) -> None:
    # Adjacent literal text could complete a reference with its neighbour: keep them apart.
    text_parts = [p.text if isinstance(p, Ref) else p.replace("$", "") for p in parts]
    text = "|".join(text_parts)
    wanted = {p for p in parts if isinstance(p, Ref)}
    assert set(find(text)) == wanted
    values = {r: data.draw(st.text(max_size=12), label=r.text) for r in wanted}
    expected = "|".join(values[p] if isinstance(p, Ref) else p.replace("$", "") for p in parts)
    assert substitute(text, values, kubelet=False) == expected


def test_the_reference_grammar_matches_dns_labels_only() -> None:
    label = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
    for name in ["a", "a-b", "0", "a1-2b"]:
        assert label.fullmatch(name)
        assert find(f"$(tasks.{name}.results.{name})") == [Ref.result(name, name)]
