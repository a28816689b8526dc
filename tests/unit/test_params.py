"""Unit and property tests for sluice.core.params."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.core.params import (
    PARAM_REF,
    MissingParamError,
    referenced_params,
    resolve,
    substitute,
    undeclared,
)

# --- PARAM_REF / referenced_params -------------------------------------------


def test_param_ref_captures_the_name() -> None:
    match = PARAM_REF.search("--data=$(params.dataset)")
    assert match is not None
    assert match.group(1) == "dataset"


@pytest.mark.parametrize("name", ["x", "_x", "data_set", "a.b", "a-b", "X9", "a.b-c_d"])
def test_valid_param_names_are_references(name: str) -> None:
    assert referenced_params(f"$(params.{name})") == {name}


@pytest.mark.parametrize(
    "text",
    [
        "$(params.)",
        "$(params.9x)",
        "$(params.-x)",
        "$(params.a b)",
        "$(params.a",
        "$(param.a)",
        "${params.a}",
        "$(PARAMS.a)",
        "params.a",
        "$(HOME)",
    ],
)
def test_non_references_are_ignored(text: str) -> None:
    assert referenced_params(text) == set()


def test_referenced_params_finds_all_distinct_names() -> None:
    text = "$(params.a) $(params.b)-$(params.a)/$(params.c.d)"
    assert referenced_params(text) == {"a", "b", "c.d"}


def test_text_without_references_references_nothing() -> None:
    assert referenced_params("python -m train") == set()


# --- substitute --------------------------------------------------------------


def test_substitute_replaces_every_reference() -> None:
    values = {"dataset": "s3://acme/churn", "epochs": "3"}
    assert (
        substitute("--data $(params.dataset) --epochs=$(params.epochs) $(params.epochs)", values)
        == "--data s3://acme/churn --epochs=3 3"
    )


def test_substitute_leaves_text_without_references_alone() -> None:
    assert substitute("echo $(HOME) $$(params.x", {}) == "echo $(HOME) $$(params.x"


def test_substitute_inserts_values_verbatim_without_rescanning() -> None:
    values = {"a": "$(params.b)", "b": "secret"}
    assert substitute("$(params.a)", values) == "$(params.b)"


def test_substitute_handles_backslashes_and_group_syntax_in_values_literally() -> None:
    assert substitute("$(params.p)", {"p": r"C:\new\1 \g<0>"}) == r"C:\new\1 \g<0>"


def test_substitute_with_empty_value() -> None:
    assert substitute("[$(params.x)]", {"x": ""}) == "[]"


def test_missing_params_are_all_named_sorted() -> None:
    with pytest.raises(MissingParamError) as info:
        substitute("$(params.zeta) $(params.alpha) $(params.ok) $(params.zeta)", {"ok": "1"})
    assert info.value.names == ("alpha", "zeta")
    assert str(info.value) == 'no value for parameters "alpha", "zeta"'


def test_single_missing_param_message_is_singular() -> None:
    with pytest.raises(MissingParamError, match=r'^no value for parameter "x"$'):
        substitute("$(params.x)", {})


def test_missing_param_error_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        substitute("$(params.x)", {})


def test_missing_param_error_survives_pickling() -> None:
    err = pickle.loads(pickle.dumps(MissingParamError(["b", "a"])))
    assert err.names == ("a", "b")
    assert str(err) == 'no value for parameters "a", "b"'


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,5}", fullmatch=True),
        st.text(max_size=10),
        max_size=5,
    ),
    st.text(alphabet="ab $()", max_size=20),
)
def test_substitute_leaves_no_resolvable_reference_behind(
    values: dict[str, str], filler: str
) -> None:
    text = filler + "".join(f"$(params.{name}){filler}" for name in values)
    out = substitute(text, values)
    if not any("$(params." in v for v in values.values()):
        assert referenced_params(out) == referenced_params(filler)


# --- resolve -----------------------------------------------------------------


def test_step_value_wins_over_pipeline_param_and_default() -> None:
    assert resolve([("dataset", "d")], {"dataset": "step"}, {"dataset": "pipe"}) == {
        "dataset": "step"
    }


def test_pipeline_param_of_same_name_wins_over_default() -> None:
    assert resolve([("dataset", "d")], {}, {"dataset": "pipe"}) == {"dataset": "pipe"}


def test_default_is_used_when_nothing_else_gives_a_value() -> None:
    assert resolve([("epochs", "3")], {}, {}) == {"epochs": "3"}


def test_empty_default_is_a_value() -> None:
    assert resolve([("flag", "")], {}, {}) == {"flag": ""}


def test_step_value_may_refer_to_pipeline_params() -> None:
    result = resolve(
        [("input", None)],
        {"input": "$(params.bucket)/$(params.date)"},
        {"bucket": "s3://b", "date": "2026-11-26"},
    )
    assert result == {"input": "s3://b/2026-11-26"}


def test_default_is_not_substituted() -> None:
    assert resolve([("x", "$(params.y)")], {}, {"y": "1"}) == {"x": "$(params.y)"}


def test_param_without_any_value_raises() -> None:
    with pytest.raises(MissingParamError) as info:
        resolve([("dataset", None), ("epochs", "3")], {}, {})
    assert info.value.names == ("dataset",)


def test_every_missing_param_is_reported_at_once() -> None:
    with pytest.raises(MissingParamError) as info:
        resolve([("b", None), ("a", None), ("c", None)], {"c": "$(params.nope)"}, {})
    assert info.value.names == ("a", "b", "nope")


def test_undeclared_step_values_are_ignored_by_resolve() -> None:
    assert resolve([("a", None)], {"a": "1", "typo": "2"}, {}) == {"a": "1"}


def test_resolve_with_nothing_declared_is_empty() -> None:
    assert resolve([], {"x": "1"}, {"y": "2"}) == {}


def test_pipeline_params_not_declared_by_task_are_not_passed() -> None:
    assert resolve([("a", None)], {}, {"a": "1", "b": "2"}) == {"a": "1"}


# --- undeclared --------------------------------------------------------------


def test_undeclared_lists_step_values_the_task_does_not_declare_sorted() -> None:
    assert undeclared(["a", "b"], {"b": "1", "zz": "2", "c": "3"}) == ["c", "zz"]


def test_undeclared_is_empty_when_all_are_declared() -> None:
    assert undeclared(iter(["a"]), {"a": "1"}) == []
    assert undeclared([], {}) == []
