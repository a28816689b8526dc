"""Unit and property tests for sluice.core.matrix: combinations, cap, fromResult values,
per-combination params, minSuccess, result arrays (issue 15)."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.api import Matrix
from sluice.core import matrix as mx
from sluice.core.matrix import Axis, InvalidMatrix
from sluice.core.params import MissingParamError
from sluice.core.references import result_text

LR = Axis("lr", ("0.1", "0.01"))
DEPTH = Axis("depth", ("4", "8"))


def _matrix(*params: dict[str, object], **extra: object) -> Matrix:
    return Matrix.model_validate({"params": list(params), **extra})


# --- order and width ----------------------------------------------------------


def test_the_first_param_varies_slowest() -> None:
    assert list(mx.combinations([LR, DEPTH])) == [
        {"lr": "0.1", "depth": "4"},
        {"lr": "0.1", "depth": "8"},
        {"lr": "0.01", "depth": "4"},
        {"lr": "0.01", "depth": "8"},
    ]


def test_combination_keeps_the_params_order() -> None:
    assert list(mx.combination([LR, DEPTH], 3)) == ["lr", "depth"]


def test_width_is_the_product_and_one_without_params() -> None:
    assert mx.width([LR, DEPTH, Axis("s", ("a", "b", "c"))]) == 12
    assert mx.width([]) == 1
    assert mx.width([LR, Axis("empty", ())]) == 0


def test_combination_out_of_range_is_an_index_error() -> None:
    with pytest.raises(IndexError):
        mx.combination([LR, DEPTH], 4)
    with pytest.raises(IndexError):
        mx.combination([LR], -1)


axes_strategy = st.lists(
    st.lists(st.text(max_size=3), min_size=1, max_size=4),
    min_size=1,
    max_size=4,
).map(lambda vs: [Axis(f"p{i}", tuple(v)) for i, v in enumerate(vs)])


@settings(max_examples=150, deadline=None)
@given(axes_strategy)
def test_combinations_are_itertools_product_in_order(axes: list[Axis]) -> None:
    expected = [
        dict(zip([a.name for a in axes], combo, strict=True))
        for combo in itertools.product(*(a.values for a in axes))
    ]
    assert list(mx.combinations(axes)) == expected
    assert mx.width(axes) == len(expected)


# --- the cap --------------------------------------------------------------------


def test_the_cap_message_has_the_count_and_the_cap() -> None:
    wide = [Axis("a", tuple(map(str, range(20)))), Axis("b", tuple(map(str, range(13))))]
    with pytest.raises(InvalidMatrix) as err:
        mx.check_width("sweep", wide)
    assert str(err.value) == (
        'task "sweep": the matrix has 260 combinations, more than the cap of 256 '
        "(sluice run --max-matrix)"
    )
    assert err.value.reason == "InvalidMatrix"
    assert str(err.value) == mx.too_wide("sweep", 260, 256)


def test_a_matrix_at_the_cap_or_a_raised_cap_passes() -> None:
    exactly = [Axis("a", tuple(map(str, range(16)))), Axis("b", tuple(map(str, range(16))))]
    assert mx.check_width("s", exactly) == 256
    assert mx.check_width("s", exactly, cap=1000) == 256
    with pytest.raises(InvalidMatrix, match="cap of 100"):
        mx.check_width("s", exactly, cap=100)


# --- fromResult values ----------------------------------------------------------


def test_a_json_array_of_strings_is_the_values() -> None:
    assert mx.parse_from_result("t", "shard", "$(tasks.l.results.s)", '["a","b"]') == ["a", "b"]
    assert mx.parse_from_result("t", "shard", "$(tasks.l.results.s)", "[]") == []


def test_a_matrixed_producers_list_is_taken_as_is() -> None:
    assert mx.parse_from_result("t", "p", "$(tasks.l.results.s)", ("x", "y")) == ["x", "y"]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("a,b", 'which is "a,b": not JSON'),
        ('{"a": "b"}', "which is an object: expected a JSON array of strings"),
        ('"abc"', "which is str"),
        ("3", "which is int"),
        ('["a", 3]', 'item 1 is "3", not a string'),
        ('[["a"]]', "item 0 is"),
        ("[null]", 'item 0 is "null"'),
    ],
)
def test_anything_else_is_invalid_matrix_with_a_clear_message(value: str, fragment: str) -> None:
    with pytest.raises(InvalidMatrix) as err:
        mx.parse_from_result("eval", "shard", "$(tasks.list.results.shards)", value)
    message = str(err.value)
    assert message.startswith(
        'task "eval": matrix param "shard" takes its values from $(tasks.list.results.shards)'
    )
    assert fragment in message


def test_a_long_bad_value_is_shortened_in_the_message() -> None:
    with pytest.raises(InvalidMatrix) as err:
        mx.parse_from_result("t", "p", "$(tasks.l.results.s)", "x" * 10_000)
    assert len(str(err.value)) < 300


# --- axes from the API model ------------------------------------------------------


def test_static_axes_and_dynamic_ones() -> None:
    static = _matrix({"name": "lr", "values": ["0.1", "0.01"]})
    assert mx.static_axes(static) == [LR]
    dynamic = _matrix({"name": "shard", "fromResult": "$(tasks.list.results.shards)"})
    assert mx.static_axes(dynamic) is None


def test_axes_read_fromresult_values_from_the_producers_results() -> None:
    m = _matrix(
        {"name": "lr", "values": ["0.1", "0.01"]},
        {"name": "shard", "fromResult": "$(tasks.list.results.shards)"},
    )
    axes = mx.axes("train", m, {"list": {"shards": '["s0","s1","s2"]'}})
    assert axes == [LR, Axis("shard", ("s0", "s1", "s2"), literal=True)]
    assert mx.width(axes) == 6


def test_axes_without_the_result_yet_name_the_reference() -> None:
    m = _matrix({"name": "shard", "fromResult": "$(tasks.list.results.shards)"})
    with pytest.raises(KeyError, match=r"\$\(tasks.list.results.shards\)"):
        mx.axes("train", m, {})


def test_axes_with_a_bad_result_raise_invalid_matrix() -> None:
    m = _matrix({"name": "shard", "fromResult": "$(tasks.list.results.shards)"})
    with pytest.raises(InvalidMatrix, match="not JSON"):
        mx.axes("train", m, {"list": {"shards": "s0 s1"}})


# --- params of one combination -----------------------------------------------------


DECLARED = [("lr", None), ("depth", "2"), ("data", None), ("shard", None)]


def test_combination_params_resolve_like_any_step() -> None:
    axes = [LR, DEPTH, Axis("shard", ("$(params.secret)",), literal=True)]
    got = mx.combination_params(
        DECLARED,
        {"data": "s3://$(params.bucket)/x"},
        {"bucket": "b", "secret": "hunter2", "lr": "9"},
        axes,
        2,
    )
    # Static values win over the pipeline's; a value from a result is never substituted.
    assert got == {"lr": "0.01", "depth": "4", "data": "s3://b/x", "shard": "$(params.secret)"}


def test_static_values_may_use_pipeline_params() -> None:
    axes = [Axis("lr", ("$(params.base)", "0.5"))]
    got = mx.combination_params([("lr", None)], {}, {"base": "0.1"}, axes, 0)
    assert got == {"lr": "0.1"}


def test_combination_params_report_every_missing_param() -> None:
    with pytest.raises(MissingParamError) as err:
        mx.combination_params(DECLARED, {}, {}, [LR], 0)
    assert err.value.names == ("data", "shard")


# --- minSuccess ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "width", "required"),
    [
        (None, 8, 8),
        (None, 0, 0),
        (3, 8, 3),
        (8, 8, 8),
        ("100%", 8, 8),
        ("90%", 10, 9),
        ("90%", 11, 10),  # rounded up
        ("1%", 256, 3),
        ("50%", 1, 1),
    ],
)
def test_min_success(value: int | str | None, width: int, required: int) -> None:
    assert mx.parse_min_success("s", value, width) == required


def test_min_success_above_the_width_is_invalid() -> None:
    with pytest.raises(InvalidMatrix) as err:
        mx.parse_min_success("sweep", 12, 8)
    assert str(err.value) == (
        'task "sweep": matrix.minSuccess (12) is more than the matrix\'s 8 combinations'
    )


@pytest.mark.parametrize("value", [0, -1, True, "0%", "101%", "90", "x%", "9.5%"])
def test_min_success_that_is_no_count_or_percentage_is_invalid(value: int | str) -> None:
    with pytest.raises(InvalidMatrix, match=r'task "s": matrix\.minSuccess'):
        mx.parse_min_success("s", value, 10)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 100), st.integers(0, 5000))
def test_a_percentage_never_exceeds_the_width_nor_falls_below_it(pct: int, width: int) -> None:
    required = mx.parse_min_success("s", f"{pct}%", width)
    assert 0 <= required <= width
    assert required * 100 >= width * pct  # at least the percentage
    assert (required - 1) * 100 < width * pct or required == 0  # the least such count


# --- results arrays --------------------------------------------------------------------


def test_results_are_arrays_in_combination_order_with_holes_kept() -> None:
    per = [{"auc": "0.91", "uri": "a"}, None, {"auc": "0.88", "uri": "c"}]
    got = mx.results_array(["auc", "uri"], per)
    assert got == {"auc": ["0.91", "", "0.88"], "uri": ["a", "", "c"]}
    # As text they are what $(tasks.sweep.results.auc) gives a later step.
    assert result_text(got["auc"]) == '["0.91","","0.88"]'
    assert json.loads(result_text(got["auc"])) == ["0.91", "", "0.88"]


def test_results_of_an_empty_matrix_are_empty_arrays() -> None:
    assert mx.results_array(["auc"], []) == {"auc": []}
