"""``when``: a CEL condition that decides whether a step runs.

The library is ``cel-expr-python``, the CEL project's own Python binding of its C++
implementation (cel-cpp): the same language and standard library as Kubernetes' CRD
validation rules, with a type checker, so a ``when`` is refused at ``kubectl apply`` when it
does not parse, uses a variable that does not exist, or is not a condition.

Variables
    ``params.NAME``                 a pipeline param (string)
    ``tasks.STEP.results.NAME``     a result (string; a list of strings for a matrixed step)
    ``tasks.STEP.phase``            a step's phase (``Succeeded`` or ``Skipped`` by then)
    ``tasks.status``                finally steps: ``Succeeded``, ``Degraded`` or ``Timeout``
    ``tasks.STEP.status``           finally steps: the final phase of main step STEP

    Each is declared to the checker as one qualified name (``tasks.train.results.auc``), so a
    typo in any part is an "undeclared reference" at compile time, not a missing key at run
    time. CEL identifiers cannot hold ``-`` (``tasks.my-step`` reads as ``tasks.my - step``):
    such names are written ``$(tasks.my-step.results.model-uri)``, the reference syntax of
    params, args and env. Inside a ``when`` that is **not** text substitution (Tekton's
    ``'$(...)'`` pastes the value into the expression, so a quote in a result breaks it): it
    is rewritten to the variable, escaped the way Kubernetes' CEL escapes property names
    (``-`` is ``__dash__``, ``__`` is ``__underscores__``, a reserved word ``w`` is
    ``__w__``; and here a leading digit gets ``__``), and error positions are mapped back to
    what the user wrote.

Results
    :func:`compile` returns :class:`Compiled` (with the references it uses, exactly, from the
    checker's reference map: they become dependencies) or :class:`CompileError` (the CEL
    errors with line:column, unknown variables named, a "did you mean").
    :func:`evaluate` returns True, False or :class:`WhenError` (reason ``WhenError``, CEL's
    error text): never an exception. :func:`false_message` says what a false condition saw.

The module is pure: compiling and evaluating do no I/O.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from sluice.core import cel
from sluice.core.cel import (
    _RESERVED,  # noqa: F401  (tests read the escaping through this module)
    _STATUS_PREFIX,
    _cel_name,
    _escape_part,  # noqa: F401
    _unescape_part,  # noqa: F401
    cel_name,
)
from sluice.core.cel import reference_names as _reference_names
from sluice.core.cel import type_name as _type_name
from sluice.core.references import Ref
from sluice.core.when_issues import Issue, _assumable, _issues, _rewrite

__all__ = [
    "MAX_EXPRESSION",
    "RUN_STATUSES",
    "WHEN_ERROR",
    "CompileError",
    "Compiled",
    "Issue",
    "Scope",
    "WhenError",
    "WhenFalse",
    "cel_name",
    "compile",
    "decide",
    "evaluate",
    "false_message",
]

MAX_EXPRESSION: Final = 4096
"""Longest ``when`` in characters (CRD ``maxLength``): a condition, not a program."""

WHEN_ERROR: Final = "WhenError"
"""The reason of a step whose ``when`` failed to evaluate."""

RUN_STATUSES: Final = ("Succeeded", "Degraded", "Timeout")
"""The values of ``tasks.status``."""

_MAX_ISSUES: Final = 5
_MAX_SHOWN_VALUE: Final = 80
_MAX_SHOWN_VALUES: Final = 8
_MAX_SHOWN_EXPRESSION: Final = 200


# ----------------------------------------------------------------------------- scope


@dataclass(frozen=True, eq=False)
class Scope:
    """The variables one kind of step (main or finally) can use in its ``when``.

    Build one per pipeline and kind, and compile every ``when`` of that kind in it (the
    CEL environment is made once, on first use: about 12 µs per variable).
    """

    params: Sequence[str]
    """The pipeline's param names."""
    steps: Mapping[str, Sequence[str] | None]
    """The steps whose results and phase are visible, with their declared result names;
    None when the step's Task is not known yet: any result name is then accepted (and
    noted in :attr:`Compiled.assumed`)."""
    matrixed: frozenset[str] = frozenset()
    """Steps whose results are lists of strings (one per combination)."""
    main: Sequence[str] = ()
    """In a finally scope: the main steps, whose ``tasks.STEP.status`` is visible."""
    finally_: bool = False
    """A finally scope: ``tasks.status`` and ``tasks.STEP.status`` are visible."""
    hidden: frozenset[str] = frozenset()
    """Steps that exist but are out of scope (a main step's scope hides the finally steps):
    named in the message instead of "no such task"."""
    external: frozenset[str] = frozenset()
    """Steps whose results come from a Task object (an undeclared result is external)."""

    @staticmethod
    def for_main(
        params: Sequence[str],
        steps: Mapping[str, Sequence[str] | None],
        *,
        matrixed: Iterable[str] = (),
        finally_steps: Iterable[str] = (),
        external: Iterable[str] = (),
    ) -> Scope:
        return Scope(
            params=list(params),
            steps=dict(steps),
            matrixed=frozenset(matrixed),
            hidden=frozenset(finally_steps),
            external=frozenset(external),
        )

    @staticmethod
    def for_finally(
        params: Sequence[str],
        main: Mapping[str, Sequence[str] | None],
        finally_steps: Mapping[str, Sequence[str] | None],
        *,
        matrixed: Iterable[str] = (),
        external: Iterable[str] = (),
    ) -> Scope:
        return Scope(
            params=list(params),
            steps={**main, **finally_steps},
            matrixed=frozenset(matrixed),
            main=list(main),
            finally_=True,
            external=frozenset(external),
        )

    @functools.cached_property
    def variables(self) -> dict[str, Ref]:
        """Every declared variable, by CEL name."""
        refs: list[Ref] = [Ref.param(p) for p in self.params]
        for step, results in self.steps.items():
            refs.append(Ref.phase(step))
            refs.extend(Ref.result(step, r) for r in results or ())
        if self.finally_:
            refs.append(Ref.run_status())
            refs.extend(Ref.status(step) for step in self.main)
        return {cel_name(r): r for r in refs}

    def env(self, assumed: Iterable[Ref] = ()) -> Any:
        """The CEL environment (cached when nothing is assumed)."""
        extra = list(assumed)
        if not extra:
            return self._env
        return self._make_env([*self.variables.values(), *extra])

    @functools.cached_property
    def _env(self) -> Any:
        return self._make_env(self.variables.values())

    def _make_env(self, refs: Iterable[Ref]) -> Any:
        string, strings = cel.STRING, cel.STRINGS
        matrixed = self.matrixed
        return cel.new_env(
            {
                cel_name(r): strings if r.kind == "result" and r.step in matrixed else string
                for r in refs
            }
        )


# ----------------------------------------------------------------------------- compile


@dataclass(frozen=True)
class CompileError:
    """Why a ``when`` does not compile; :attr:`message` is for a human."""

    issues: tuple[Issue, ...]
    unknown: tuple[str, ...] = ()
    """Variables it uses that do not exist, as written (``tasks.trian.results.auc``)."""

    @property
    def message(self) -> str:
        shown = [str(i) for i in self.issues[:_MAX_ISSUES]]
        if len(self.issues) > _MAX_ISSUES:
            shown.append(f"and {len(self.issues) - _MAX_ISSUES} more")
        return "; ".join(shown)

    @property
    def external(self) -> bool:
        """Every issue depends on a Task object (a result it does not declare, yet)."""
        return bool(self.issues) and all(i.external for i in self.issues)


@dataclass(frozen=True, eq=False)
class Compiled:
    """A checked ``when``, ready to evaluate (thread-safe, reusable)."""

    source: str
    references: frozenset[Ref]
    """The variables it uses: each step named here is a dependency of the step."""
    assumed: frozenset[Ref] = frozenset()
    """Results of steps whose Task is unknown that it uses (check them once it is known)."""
    _program: Any = field(default=None, repr=False)

    @property
    def producers(self) -> list[str]:
        """The steps it refers to, sorted."""
        return sorted({r.step for r in self.references if r.step})


def compile(expression: str, scope: Scope) -> Compiled | CompileError:
    """Check ``expression`` against ``scope``; never raises."""
    if not expression.strip():
        return CompileError((Issue(1, 1, "the condition is empty"),))
    if len(expression) > MAX_EXPRESSION:
        return CompileError(
            (Issue(1, 1, f"the condition is longer than {MAX_EXPRESSION} characters"),)
        )
    text, spans = _rewrite(expression)
    assumed: list[Ref] = []
    program: Any = None
    error = ""
    for _ in range(2):
        try:
            program = scope.env(assumed).compile(text)
            break
        except Exception as err:  # the binding raises RuntimeError with the checker's text
            error = str(err)
            extra = _assumable(error, scope) if not assumed else []
            if not extra:
                program = None
                break
            assumed = extra
    if program is None:
        issues, unknown = _issues(error, text, expression, spans, scope)
        return CompileError(tuple(issues), tuple(unknown))
    kind = _type_name(program.return_type())
    if kind not in ("BOOL", "DYN"):
        return CompileError(
            (Issue(1, 1, f"the condition must be true or false, but it is a {kind.lower()}"),)
        )
    variables = scope.variables
    extra_vars = {cel_name(r): r for r in assumed}
    names = _reference_names(program.serialize())
    refs = frozenset(
        variables.get(n) or extra_vars[n] for n in names if n in variables or n in extra_vars
    )
    return Compiled(expression, refs, frozenset(assumed) & refs, program)


# ----------------------------------------------------------------------------- evaluate


@dataclass(frozen=True)
class WhenError:
    """A ``when`` that could not be evaluated: the step fails with this reason and message."""

    message: str
    reason: str = WHEN_ERROR


def _shown(value: str | Sequence[str]) -> str:
    text = json.dumps(value if isinstance(value, str) else list(value), ensure_ascii=False)
    return text if len(text) <= _MAX_SHOWN_VALUE else text[: _MAX_SHOWN_VALUE - 1] + "…"


def _seen(compiled: Compiled, values: Mapping[Ref, str | Sequence[str]]) -> str:
    refs = sorted(compiled.references, key=lambda r: r.dotted)
    shown = [f"{r.dotted} = {_shown(values[r])}" for r in refs if r in values]
    if len(shown) > _MAX_SHOWN_VALUES:
        shown = [*shown[:_MAX_SHOWN_VALUES], f"and {len(shown) - _MAX_SHOWN_VALUES} more"]
    return ", ".join(shown)


def _quoted_source(compiled: Compiled) -> str:
    source = " ".join(compiled.source.split())
    if len(source) > _MAX_SHOWN_EXPRESSION:
        source = source[: _MAX_SHOWN_EXPRESSION - 1] + "…"
    return json.dumps(source, ensure_ascii=False)


def evaluate(compiled: Compiled, values: Mapping[Ref, str | Sequence[str]]) -> bool | WhenError:
    """True or False, or why it could not say; never raises.

    ``values`` must hold every one of ``compiled.references`` (a result as a string, or a
    list of strings for a matrixed step).
    """
    missing = sorted(r.dotted for r in compiled.references if r not in values)
    if missing:
        return WhenError(f"when {_quoted_source(compiled)}: no value for {', '.join(missing)}")
    data: dict[str, Any] = {}
    for ref in compiled.references:
        value = values[ref]
        data[_cel_name(ref)] = value if isinstance(value, str) else list(value)
    try:
        result = compiled._program.eval(data=data)
        kind = _type_name(result.type())
        value = result.value()
    except Exception as err:  # the binding's own failures: still a WhenError, never a crash
        return _error(compiled, values, str(err))
    if kind == "BOOL" and isinstance(value, bool):
        return value
    if kind == "ERROR":
        return _error(compiled, values, str(value))
    return _error(compiled, values, f"the result is a {kind.lower()}, not true or false")


def _error(compiled: Compiled, values: Mapping[Ref, str | Sequence[str]], text: str) -> WhenError:
    text = _STATUS_PREFIX.sub("", text.strip().split("\n")[0])[:300]
    seen = _seen(compiled, values)
    return WhenError(
        f"when {_quoted_source(compiled)} failed: {text}" + (f" (it saw {seen})" if seen else "")
    )


def false_message(compiled: Compiled, values: Mapping[Ref, str | Sequence[str]]) -> str:
    """The message of a step skipped because its ``when`` is false (at most ~1 KiB)."""
    seen = _seen(compiled, values)
    return f"when {_quoted_source(compiled)} is false" + (f"; it saw {seen}" if seen else "")


@dataclass(frozen=True)
class WhenFalse:
    """A ``when`` that is false: the step is skipped with reason ``WhenFalse`` and this
    message (:func:`false_message`)."""

    message: str
    reason: str = "WhenFalse"


def decide(
    compiled: Compiled, values: Mapping[Ref, str | Sequence[str]]
) -> Literal[True] | WhenFalse | WhenError:
    """:func:`evaluate` with the message of a false condition made (never raises)."""
    verdict = evaluate(compiled, values)
    if verdict is True:
        return True
    if verdict is False:
        return WhenFalse(false_message(compiled, values))
    return verdict
