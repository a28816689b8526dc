"""Unit and property tests for sluice.core.when (CEL conditions)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.core import when
from sluice.core.references import Ref
from sluice.core.when import (
    Compiled,
    CompileError,
    Scope,
    WhenError,
    WhenFalse,
    cel_name,
    compile,
    decide,
    evaluate,
    false_message,
)

AUC = Ref.result("evaluate", "auc")
URI = Ref.result("train", "model-uri")
SWEEP = Ref.result("sweep", "auc")

MAIN = Scope.for_main(
    ["env", "lr", "my-param", "a.b"],
    {
        "train": ["model-uri", "loss"],
        "evaluate": ["auc"],
        "sweep": ["auc"],
        "my-step": ["x"],
        "1st": ["in"],
        "later": None,  # its Task is not applied yet
    },
    matrixed=["sweep"],
    finally_steps=["notify"],
    external=["evaluate", "later"],
)
FINALLY = Scope.for_finally(
    ["env"],
    {"train": ["model-uri"], "evaluate": ["auc"]},
    {"notify": [], "cleanup": ["done"]},
)


def ok(expression: str, scope: Scope = MAIN) -> Compiled:
    compiled = compile(expression, scope)
    assert isinstance(compiled, Compiled), compiled.message
    return compiled


def refused(expression: str, scope: Scope = MAIN) -> CompileError:
    compiled = compile(expression, scope)
    assert isinstance(compiled, CompileError), f"{expression!r} compiled"
    return compiled


# --- compile: what is accepted, and its references ------------------------------------------


@pytest.mark.parametrize(
    ("expression", "refs"),
    [
        ("double(tasks.evaluate.results.auc) >= 0.8", {AUC}),
        ('params.env == "prod" && params.lr > "0.01"', {Ref.param("env"), Ref.param("lr")}),
        ("size(tasks.sweep.results.auc) > 0", {SWEEP}),
        ("tasks.sweep.results.auc.exists(a, double(a) > 0.9)", {SWEEP}),
        ("tasks.sweep.results.auc.map(a, double(a)).all(x, x < 1.0)", {SWEEP}),
        ('$(tasks.train.results.model-uri).startsWith("s3://")', {URI}),
        ('$(tasks.my-step.results.x) == "y"', {Ref.result("my-step", "x")}),
        ('$(tasks.1st.results.in) == "z"', {Ref.result("1st", "in")}),
        (
            '$(params.my-param) == "" || params.a.b == "1"',
            {Ref.param("my-param"), Ref.param("a.b")},
        ),
        ('tasks.train.phase == "Skipped"', {Ref.phase("train")}),
        ('$(tasks.my-step.phase) == "Succeeded"', {Ref.phase("my-step")}),
        ('params.env.lowerAscii() == "prod"', {Ref.param("env")}),  # the strings extension
        ("true", set()),
        # $(...) inside a string literal or a comment is text, not a reference.
        ('"$(tasks.nope.phase)" == params.env // $(tasks.nope.phase)', {Ref.param("env")}),
        ("r'\\d' + '$(tasks.nope.phase)' == params.env", {Ref.param("env")}),
        ('"""a "$(tasks.nope.phase)" b""" == params.env', {Ref.param("env")}),
    ],
)
def test_compiles_with_exact_references(expression: str, refs: set[Ref]) -> None:
    compiled = ok(expression)
    assert compiled.references == refs
    assert compiled.producers == sorted({r.step for r in refs if r.step})


def test_finally_scope_sees_run_and_step_status() -> None:
    compiled = ok('tasks.status == "Degraded" && tasks.train.status != "Succeeded"', FINALLY)
    assert compiled.references == {Ref.run_status(), Ref.status("train")}
    ok('tasks.cleanup.results.done == "yes" && tasks.cleanup.phase == "Succeeded"', FINALLY)


def test_result_of_a_step_whose_task_is_unknown_is_assumed() -> None:
    compiled = ok('tasks.later.results.anything == "1"')
    assert compiled.assumed == {Ref.result("later", "anything")}
    assert compiled.references == {Ref.result("later", "anything")}


# --- compile: refusals, with positions and names --------------------------------------------


def test_unknown_step_is_named_with_a_suggestion_and_position() -> None:
    err = refused('tasks.evalute.results.auc == "1"')
    assert err.unknown == ("tasks.evalute.results.auc",)
    assert err.message.startswith("1:22: unknown variable tasks.evalute.results.auc: ")
    assert 'there is no task "evalute" (did you mean "evaluate"?)' in err.message
    assert not err.external


def test_undeclared_result_names_the_declared_ones_and_is_external_for_a_task_ref() -> None:
    err = refused('tasks.evaluate.results.acu == "1"')
    assert 'task "evaluate" declares no result "acu" (it declares "auc")' in err.message
    assert err.external  # the Task may still be changed: a warning at apply
    inline = refused('tasks.train.results.los == "1"')
    assert 'declares no result "los"' in inline.message
    assert '(did you mean "loss"?)' in inline.message
    assert not inline.external


def test_positions_are_mapped_back_through_rewritten_references() -> None:
    expression = (
        'params.env == "a" &&\n  $(tasks.my-step.results.x) == "b" && $(tasks.nope.phase) == ""'
    )
    err = refused(expression)
    # Line 2, the "$" of $(tasks.nope.phase), whatever the rewriting did before it.
    column = expression.split("\n")[1].index("$(tasks.nope") + 1
    assert err.message.startswith(f"2:{column}: unknown variable tasks.nope.phase")


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("1 +", "1:4: Syntax error"),
        ("tasks.evaluate.results.auc", "must be true or false, but it is a string"),
        ("size(tasks.sweep.results.auc)", "but it is a int"),
        ("tasks.evaluate.results.auc == 1", "no matching overload for '_==_'"),
        ("nosuch(1)", "undeclared reference to 'nosuch'"),
        ('tasks.notify.phase == "x"', '"notify" is a finally task'),
        ('tasks.status == "Succeeded"', "tasks.status is only known to finally tasks"),
        ('tasks.train.status == "Succeeded"', "only known to finally tasks"),
        ('params.envv == "prod"', 'no parameter "envv" (did you mean "env"?)'),
        ('tasks.my-step.phase == "x"', "a name with '-' is written $(tasks.my-step....)"),
        ('params.my-param == "x"', "a name with '-' is written $(params.my-param)"),
        ('tasks.train.result.loss == "x"', "a task has results.NAME, phase"),
        ("", "the condition is empty"),
        ("x" * (when.MAX_EXPRESSION + 1), "longer than 4096 characters"),
    ],
)
def test_refusals_say_why(expression: str, fragment: str) -> None:
    assert fragment in refused(expression).message


def test_finally_step_status_of_a_finally_step_is_refused() -> None:
    err = refused('tasks.cleanup.status == "x"', FINALLY)
    assert "tasks.NAME.status is a main task's" in err.message


def test_every_problem_is_reported_at_once() -> None:
    err = refused('tasks.a.phase == "x" || tasks.b.phase == "y" || params.zz == ""')
    assert err.unknown == ("tasks.a.phase", "tasks.b.phase", "params.zz")
    assert len(err.issues) == 3


# --- evaluate ---------------------------------------------------------------------------------


def test_evaluates_true_and_false() -> None:
    compiled = ok("double(tasks.evaluate.results.auc) >= 0.8")
    assert evaluate(compiled, {AUC: "0.91"}) is True
    assert evaluate(compiled, {AUC: "0.79"}) is False


def test_lists_of_a_matrixed_step() -> None:
    compiled = ok("tasks.sweep.results.auc.exists(a, double(a) > 0.9)")
    assert evaluate(compiled, {SWEEP: ["0.5", "0.95"]}) is True
    assert evaluate(compiled, {SWEEP: []}) is False


def test_run_time_errors_are_when_errors_with_cels_text() -> None:
    compiled = ok("double(tasks.evaluate.results.auc) >= 0.8")
    result = evaluate(compiled, {AUC: "abc"})
    assert isinstance(result, WhenError)
    assert result.reason == "WhenError"
    assert "cannot convert string to double" in result.message
    assert 'tasks.evaluate.results.auc = "abc"' in result.message
    index = evaluate(ok("tasks.sweep.results.auc[3] == 'x'"), {SWEEP: ["a"]})
    assert isinstance(index, WhenError)
    assert "index" in index.message.lower()


def test_a_non_boolean_dynamic_result_is_an_error() -> None:
    result = evaluate(ok("dyn(tasks.evaluate.results.auc)"), {AUC: "x"})
    assert isinstance(result, WhenError)
    assert "not true or false" in result.message


def test_a_missing_value_is_an_error_not_a_crash() -> None:
    result = evaluate(ok("tasks.evaluate.results.auc == 'x'"), {})
    assert isinstance(result, WhenError)
    assert "no value for tasks.evaluate.results.auc" in result.message


def test_false_message_shows_the_expression_and_values_bounded() -> None:
    compiled = ok("double(tasks.evaluate.results.auc) >= 0.8 && params.env == 'prod'")
    message = false_message(compiled, {AUC: "0.71", Ref.param("env"): "x" * 5000})
    assert message.startswith('when "double(tasks.evaluate.results.auc) >= 0.8 && ')
    assert 'tasks.evaluate.results.auc = "0.71"' in message
    assert len(message) < 1024
    assert isinstance(decide(compiled, {AUC: "0.71", Ref.param("env"): "prod"}), WhenFalse)
    assert decide(compiled, {AUC: "0.9", Ref.param("env"): "prod"}) is True


def test_a_compiled_expression_is_reusable() -> None:
    compiled = ok('params.env == "prod"')
    assert [evaluate(compiled, {Ref.param("env"): v}) for v in ("prod", "dev", "prod")] == [
        True,
        False,
        True,
    ]


# --- names ------------------------------------------------------------------------------------


def test_cel_names_escape_like_kubernetes() -> None:
    assert cel_name(Ref.result("train", "auc")) == "tasks.train.results.auc"
    assert (
        cel_name(Ref.result("my-step", "model-uri"))
        == "tasks.my__dash__step.results.model__dash__uri"
    )
    assert cel_name(Ref.phase("in")) == "tasks.__in__.phase"
    assert cel_name(Ref.param("a__b")) == "params.a__underscores__b"
    assert cel_name(Ref.phase("1st")) == "tasks.__1st.phase"


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
labels = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
param_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,20}", fullmatch=True)


@given(st.one_of(labels, param_names))
def test_escaping_gives_an_identifier_and_round_trips(name: str) -> None:
    escaped = when._escape_part(name)
    assert _IDENT.fullmatch(escaped)
    assert escaped not in when._RESERVED
    assert when._unescape_part(escaped) == name


@given(st.lists(st.one_of(labels, param_names), min_size=2, max_size=2, unique=True))
def test_escaping_is_injective(names: list[str]) -> None:
    a, b = names
    assert when._escape_part(a) != when._escape_part(b)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_compile_never_raises(expression: str) -> None:
    result = compile(expression, MAIN)
    assert isinstance(result, Compiled | CompileError)
    if isinstance(result, CompileError):
        assert result.message


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.lists(st.text(max_size=10), max_size=5))
def test_evaluate_never_raises_and_matches_python(value: str, listed: list[str]) -> None:
    compiled = ok(
        "double(tasks.evaluate.results.auc) >= 0.8 || tasks.sweep.results.auc.exists(a, a == 'x')"
    )
    result = evaluate(compiled, {AUC: value, SWEEP: listed})
    assert isinstance(result, bool | WhenError)
    comparison = ok('tasks.evaluate.results.auc < "m"')
    assert evaluate(comparison, {AUC: value}) is (value < "m")  # code point order, as Python


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
def test_double_threshold_agrees_with_python(x: float) -> None:
    compiled = ok("double(tasks.evaluate.results.auc) >= 0.8")
    assert evaluate(compiled, {AUC: repr(x)}) is (x >= 0.8)


@given(st.binary(max_size=200))
def test_reading_the_reference_map_never_raises(blob: bytes) -> None:
    assert isinstance(when._reference_names(blob), set)


def test_the_reference_map_is_read_from_the_bindings_serialised_form() -> None:
    # Pins the reading of cel-expr-python's serialisation (a CheckedExpr in an Any): a new
    # version that changes it fails here, not silently with no dependencies.
    compiled = ok('double(tasks.evaluate.results.auc) > 0.5 && params.env.startsWith("p")')
    names = when._reference_names(compiled._program.serialize())
    assert names == {"tasks.evaluate.results.auc", "params.env"}


_LAZY_PROBE = """
import sys
import yaml
import sluice.app, sluice.cli, sluice.shell.admission, sluice.shell.controller
import sluice.kubectl_sluice.app, sluice.kubectl_sluice.lint
from sluice.core.validation import check_pipeline
from sluice.core import dataflow, when
assert "cel_expr_python" not in sys.modules, "loaded at import"
hello = yaml.safe_load(open(sys.argv[1]))
assert not check_pipeline(hello["spec"], name="hello").errors
assert "cel_expr_python" not in sys.modules, "loaded for a pipeline without a when"
scope = when.Scope.for_main(["env"], {})
assert isinstance(when.compile("params.env == 'prod'", scope), when.Compiled)
assert "cel_expr_python" in sys.modules, "a when compiled without the library?"
"""


def test_cel_is_loaded_on_first_use() -> None:
    """The CEL library (about 11 MiB resident) is not imported by the operator, the webhook
    or `kubectl sluice` at start-up, nor to check a pipeline without a `when`: only by the
    first `when` compiled (sluice.core.cel; the import-linter contract keeps it the only
    importer)."""
    hello = Path(__file__).resolve().parents[2] / "examples" / "hello.yaml"
    r = subprocess.run(
        [sys.executable, "-c", _LAZY_PROBE, str(hello)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
