"""Unit and property tests for sluice.core.results."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.core.results import (
    MAX_RESULTS,
    MESSAGE_BYTES,
    STATUS_BUDGET_BYTES,
    InvalidResults,
    admit,
    check_names,
    message_limit,
    parse,
    reserved_bytes,
    status_bytes,
)

DECLARED = ["model-uri", "auc"]

# --- declarations -----------------------------------------------------------------------------


def test_valid_names_have_no_problem() -> None:
    assert check_names(["model-uri", "auc", "a", "0", "x" * 63]) == []
    assert check_names([f"r{i}" for i in range(MAX_RESULTS)]) == []


@pytest.mark.parametrize("name", ["Model", "model_uri", "-x", "x-", "", "a.b", "x" * 64, "é"])
def test_invalid_names_are_named(name: str) -> None:
    [problem] = check_names([name])
    assert problem.startswith(f"result name {json.dumps(name, ensure_ascii=False)[:20]}")
    assert "is not valid" in problem
    assert "DNS label" in problem


def test_duplicates_and_too_many() -> None:
    assert check_names(["a", "b", "a"]) == ['result "a" is declared twice']
    names = [f"r{i}" for i in range(MAX_RESULTS + 1)]
    assert check_names(names) == ["17 results are declared; a task may declare at most 16"]


def test_message_limit_is_shared_by_containers() -> None:
    assert message_limit() == MESSAGE_BYTES == 4096
    assert message_limit(3) == 4096
    assert message_limit(4) == 3072
    assert message_limit(0) == 4096


# --- parse ------------------------------------------------------------------------------------


def test_parses_declared_results_in_declared_order() -> None:
    assert parse('{"auc": "0.91", "model-uri": "s3://acme/m/42"}', DECLARED) == {
        "model-uri": "s3://acme/m/42",
        "auc": "0.91",
    }
    assert list(parse('{"auc": "1", "model-uri": "2"}', DECLARED)) == DECLARED  # type: ignore[arg-type]


def invalid(message: str | None, declared: list[str] = DECLARED) -> str:
    result = parse(message, declared)
    assert isinstance(result, InvalidResults)
    assert result.reason == "InvalidResults"
    return result.message


def test_no_message() -> None:
    for message in (None, "", "  \n"):
        assert invalid(message) == (
            "the main container wrote no results to $SLUICE_RESULTS_PATH (/dev/termination-log); "
            'it declares "model-uri", "auc"'
        )


def test_not_json_says_where_and_how() -> None:
    text = invalid('{"auc": 0.9')
    assert "are not JSON (Expecting ',' delimiter at character 11)" in text
    assert 'write one object of strings, e.g. {"name": "value"}' in text


def test_a_cut_message_hints_at_the_limit() -> None:
    text = invalid('{"model-uri": "' + "x" * 5000)
    assert "the kubelet keeps at most 4096 bytes of a termination message" in text
    assert "pass large data by reference" in text


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("[1]", "an array"),
        ('"x"', "a string"),
        ("1", "a number"),
        ("null", "null"),
        ("true", "a boolean"),
    ],
)
def test_not_an_object(message: str, kind: str) -> None:
    assert f"are {kind}, not an object of strings" in invalid(message)


def test_every_problem_is_named_at_once() -> None:
    text = invalid('{"auc": 0.91, "model_uri": "s3://x", "extra": "1"}')
    assert text.startswith("invalid results in $SLUICE_RESULTS_PATH (/dev/termination-log): ")
    assert 'declared result "model-uri" missing' in text
    assert 'undeclared results "model_uri", "extra" (the task declares "model-uri", "auc")' in text
    assert 'result "auc" is 0.91, not a string (quote it)' in text


def test_a_task_that_declares_nothing_rejects_keys() -> None:
    assert 'undeclared result "x" (the task declares none)' in invalid('{"x": "1"}', [])
    assert parse("{}", []) == {}


names = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?", fullmatch=True)


@given(st.dictionaries(names, st.text(max_size=30), max_size=MAX_RESULTS))
def test_a_valid_object_round_trips(results: dict[str, str]) -> None:
    declared = sorted(results)
    assert parse(json.dumps(results), declared) == {n: results[n] for n in declared}
    assert parse(json.dumps(results, ensure_ascii=False), declared) == {
        n: results[n] for n in declared
    }


@given(st.one_of(st.none(), st.text(max_size=200)), st.lists(names, max_size=4))
def test_parse_never_raises(message: str | None, declared: list[str]) -> None:
    result = parse(message, declared)
    assert isinstance(result, dict | InvalidResults)
    if isinstance(result, dict):
        assert list(result) == declared
        assert all(isinstance(v, str) for v in result.values())
    else:
        assert len(result.message) < 2048


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(st.dictionaries(names, json_values, max_size=5), st.lists(names, max_size=4, unique=True))
def test_accepted_exactly_when_the_keys_are_declared_and_values_strings(
    obj: dict[str, object], declared: list[str]
) -> None:
    result = parse(json.dumps(obj), declared)
    valid = set(obj) == set(declared) and all(isinstance(v, str) for v in obj.values())
    assert isinstance(result, dict) is valid


# --- status budget ----------------------------------------------------------------------------


def test_status_bytes_is_the_size_of_what_is_kept() -> None:
    results = {"model-uri": "s3://acme/m/42", "auc": "0.91"}
    kept = [{"name": "model-uri", "value": "s3://acme/m/42"}, {"name": "auc", "value": "0.91"}]
    assert status_bytes(results) == len(json.dumps(kept, separators=(",", ":")))
    assert status_bytes({}) == 0
    assert status_bytes({"a": "é"}) == len('[{"name":"a","value":"é"}]'.encode())


def test_admit_within_the_budget() -> None:
    results = {"a": "x" * 100}
    size = status_bytes(results)
    assert admit(0, results, step="s") is None
    assert admit(STATUS_BUDGET_BYTES - size, results, step="s") is None
    message = admit(STATUS_BUDGET_BYTES - size + 1, results, step="train")
    assert message is not None
    assert message.startswith('the results of task "train" are 125 bytes, but a pipeline keeps')
    assert "at most 256 KiB of results in its status" in message
    assert "pass large data by reference" in message


def test_300_steps_with_maximal_results_fill_the_budget_then_fail_clearly() -> None:
    # Each step writes a full 4096-byte message of 16 results.
    per = {f"result-{i:02d}": "x" * (MESSAGE_BYTES // 16 - 20) for i in range(16)}
    used, admitted = 0, 0
    failures = []
    for step in range(300):
        message = admit(used, per, step=f"step-{step}")
        if message is None:
            used += status_bytes(per)
            admitted += 1
        else:
            failures.append(message)
    assert used <= STATUS_BUDGET_BYTES
    assert 60 <= admitted < 300
    assert all("256 KiB" in f for f in failures)


@given(
    st.integers(0, STATUS_BUDGET_BYTES), st.dictionaries(names, st.text(max_size=50), max_size=4)
)
def test_admit_never_lets_the_total_exceed_the_budget(used: int, results: dict[str, str]) -> None:
    if admit(used, results, step="s") is None:
        assert used + status_bytes(results) <= STATUS_BUDGET_BYTES


def test_reserved_bytes() -> None:
    assert reserved_bytes(0) == 0
    assert 0 < reserved_bytes(1) < STATUS_BUDGET_BYTES
    assert reserved_bytes(300) == STATUS_BUDGET_BYTES
