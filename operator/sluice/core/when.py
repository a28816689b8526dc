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

import difflib
import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from cel_expr_python import cel  # type: ignore[import-untyped]
from cel_expr_python.ext import ext_math, ext_strings  # type: ignore[import-untyped]

from sluice.core.references import Ref

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

# CEL's reserved words (cel-spec langdef.md): not identifiers, so not field names either.
_RESERVED: Final = frozenset(
    {
        *("as", "break", "const", "continue", "else", "false", "for", "function", "if"),
        *("import", "in", "let", "loop", "package", "namespace", "null", "return", "true"),
        *("var", "void", "while"),
    }
)
_UNESCAPE: Final = re.compile(
    r"__(underscores|dash|" + "|".join(sorted(_RESERVED)) + r")__|^__(?=[0-9])", re.ASCII
)

# A reference written $(...) inside a when: any variable, any name (checked by the checker).
_WHEN_REF: Final = re.compile(
    r"\$\((params\.[A-Za-z_][A-Za-z0-9_.-]*|tasks\.status"
    r"|tasks\.[a-z0-9-]+\.(?:phase|status|results\.[a-z0-9-]+))\)",
    re.ASCII,
)
_PLAIN: Final = re.compile(
    r"(?!(?:" + "|".join(sorted(_RESERVED)) + r")\Z)[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*",
    re.ASCII,
)
"""A name part that is its own escape: an identifier, not reserved, without ``__``, not
starting or ending with ``_`` (so it cannot be confused with an escape)."""
_ISSUE: Final = re.compile(r"ERROR: <input>:(\d+):(\d+): ([^\n]*)")
_UNDECLARED: Final = re.compile(r"undeclared reference to '([^']*)'(?: \(in container '[^']*'\))?")
_STATUS_PREFIX: Final = re.compile(r"^[A-Z_]+: ")


# ----------------------------------------------------------------------------- names


@functools.lru_cache(maxsize=4096)
def _escape_part(part: str) -> str:
    if _PLAIN.fullmatch(part) is not None:
        return part  # the common case: already an identifier
    if part in _RESERVED:
        return f"__{part}__"
    text = part.replace("__", "__underscores__").replace("-", "__dash__")
    return "__" + text if text[:1].isdigit() else text


def _unescape_part(part: str) -> str:
    def back(m: re.Match[str]) -> str:
        word = m.group(1)
        if word is None:
            return ""  # the prefix of a leading digit
        return {"underscores": "__", "dash": "-"}.get(word, word)

    return _UNESCAPE.sub(back, part)


def cel_name(ref: Ref) -> str:
    """The CEL identifier of a variable: ``tasks.my__dash__step.results.auc``.

    Each part is escaped on its own; a param's name keeps its dots (``params.a.b`` is a
    qualified name in CEL too)."""
    parts = [p for part in ref.path for p in part.split(".")]
    return ".".join(_escape_part(p) for p in parts)


_cel_name = functools.lru_cache(maxsize=8192)(cel_name)


def _dotted(name: str) -> str:
    """A CEL name as the user would write it (escapes undone)."""
    return ".".join(_unescape_part(p) for p in name.split("."))


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
        string, strings = cel.Type.STRING, cel.Type.List(cel.Type.STRING)
        matrixed = self.matrixed
        return cel.NewEnv(
            variables={
                cel_name(r): strings if r.kind == "result" and r.step in matrixed else string
                for r in refs
            },
            extensions=[ext_strings.ExtStrings(), ext_math.ExtMath()],
        )


# ----------------------------------------------------------------------------- compile


@dataclass(frozen=True)
class Issue:
    """One problem of an expression, at a position of the text the user wrote."""

    line: int
    column: int
    message: str
    external: bool = False

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: {self.message}"


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


def _rewrite(expression: str) -> tuple[str, list[tuple[int, int, int, int]]]:
    """Replace each ``$(...)`` outside strings and comments by its CEL name.

    Returns the new text and the replaced spans as ``(new start, new end, old start, old
    end)``, to map positions back.
    """
    out: list[str] = []
    spans: list[tuple[int, int, int, int]] = []
    i, n, length = 0, len(expression), 0
    start = 0
    while i < n:
        c = expression[i]
        if c == "/" and expression.startswith("//", i):
            end = expression.find("\n", i)
            i = n if end < 0 else end
            continue
        if c in "'\"":
            raw = i > 0 and expression[i - 1] in "rR"
            quote = expression[i : i + 3] if expression.startswith(c * 3, i) else c
            j = i + len(quote)
            while j < n and not expression.startswith(quote, j):
                j += 2 if expression[j] == "\\" and not raw else 1
            i = j + len(quote)
            continue
        if c == "$":
            m = _WHEN_REF.match(expression, i)
            if m is not None:
                ref = _parse_path(m.group(1))
                name = cel_name(ref) if ref is not None else m.group(1)
                out.append(expression[start:i])
                length += i - start
                spans.append((length, length + len(name), i, m.end()))
                out.append(name)
                length += len(name)
                i = start = m.end()
                continue
        i += 1
    out.append(expression[start:])
    return "".join(out), spans


def _parse_path(dotted: str) -> Ref | None:
    parts = dotted.split(".")
    if parts[0] == "params":
        return Ref.param(dotted[len("params.") :])
    if parts == ["tasks", "status"]:
        return Ref.run_status()
    if len(parts) == 3 and parts[2] in ("phase", "status"):
        return Ref.phase(parts[1]) if parts[2] == "phase" else Ref.status(parts[1])
    if len(parts) == 4 and parts[2] == "results":
        return Ref.result(parts[1], parts[3])
    return None


def _position(
    text: str, original: str, spans: Sequence[tuple[int, int, int, int]], line: int, column: int
) -> tuple[int, int]:
    """(line, column) in the rewritten ``text`` to the same place in ``original``."""
    lines = text.split("\n")
    offset = sum(len(x) + 1 for x in lines[: max(line - 1, 0)]) + max(column - 1, 0)
    shift = 0
    for new_start, new_end, old_start, old_end in spans:
        if offset < new_start:
            break
        if offset < new_end:
            offset, shift = old_start, 0
            break
        shift = old_end - new_end
    offset += shift
    before = original[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def _names(values: Iterable[str]) -> str:
    items = [json.dumps(v) for v in values]
    return ", ".join(items[:8]) + (", ..." if len(items) > 8 else "")


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.75)
    return f" (did you mean {json.dumps(match[0])}?)" if match else ""


def _explain_undeclared(name: str, scope: Scope) -> tuple[str, bool]:
    """What an undeclared reference means, in our words; and whether it is external."""
    parts = name.split(".")
    if parts[0] == "params" and len(parts) > 1:
        param = ".".join(parts[1:])
        longer = sorted(p for p in scope.params if p.startswith(param + "-"))
        hint = (
            f" (a name with '-' is written $(params.{longer[0]}))"
            if longer
            else _did_you_mean(param, scope.params)
        )
        return f"the pipeline has no parameter {json.dumps(param)}{hint}", False
    if parts[0] != "tasks" or len(parts) < 2:
        return "", False
    if parts[1:] == ["status"]:
        return "tasks.status is only known to finally tasks (the outcome of the main tasks)", False
    step = parts[1]
    if step in scope.hidden:
        return (
            f"{json.dumps(step)} is a finally task: finally tasks run after all the main "
            "tasks, so no main task can refer to one",
            False,
        )
    if step not in scope.steps:
        longer = sorted(s for s in scope.steps if s.startswith(step + "-"))
        hint = (
            f" (a name with '-' is written $(tasks.{longer[0]}....))"
            if longer
            else _did_you_mean(step, scope.steps)
        )
        return f"there is no task {json.dumps(step)}{hint}", False
    rest = parts[2:]
    if rest == ["status"]:
        if not scope.finally_:
            return "tasks.NAME.status is only known to finally tasks", False
        return f"{json.dumps(step)} is a finally task: tasks.NAME.status is a main task's", False
    if len(rest) == 2 and rest[0] == "results":
        declared = list(scope.steps.get(step) or ())
        listed = f" (it declares {_names(declared)})" if declared else " (it declares none)"
        return (
            f"task {json.dumps(step)} declares no result {json.dumps(rest[1])}{listed}"
            + _did_you_mean(rest[1], declared),
            step in scope.external,
        )
    return (
        f"a task has results.NAME, phase{' and status' if scope.finally_ else ''}, "
        f"not {'.'.join(rest) or 'itself'}",
        False,
    )


def _issues(
    error: str, text: str, original: str, spans: Sequence[tuple[int, int, int, int]], scope: Scope
) -> tuple[list[Issue], list[str]]:
    issues: list[Issue] = []
    unknown: list[str] = []
    for m in _ISSUE.finditer(error):
        line, column = _position(text, original, spans, int(m.group(1)), int(m.group(2)))
        message = m.group(3).removesuffix(" [INVALID_ARGUMENT]")
        external = False
        u = _UNDECLARED.search(message)
        if u is not None:
            written = _dotted(u.group(1))
            why, external = _explain_undeclared(written, scope)
            if why:
                unknown.append(written)
                message = f"unknown variable {written}: {why}"
            else:
                message = f"undeclared reference to {written!r}"
        issues.append(Issue(line, column, message[:240], external))
    if not issues:
        issues.append(Issue(1, 1, _STATUS_PREFIX.sub("", error.strip().split("\n")[0])[:200]))
    return issues, unknown


def _assumable(error: str, scope: Scope) -> list[Ref]:
    """Results of steps with an unknown Task the expression uses (to declare and retry)."""
    out: list[Ref] = []
    for m in _UNDECLARED.finditer(error):
        ref = _parse_path(_dotted(m.group(1)))
        if (
            ref is not None
            and ref.kind == "result"
            and ref.step in scope.steps
            and scope.steps[ref.step] is None
        ):
            out.append(ref)
    return list(dict.fromkeys(out))


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


def _type_name(t: Any) -> str:
    try:
        return str(t.name())
    except Exception:
        return "DYN"


# The checked expression's reference map, from its serialised form: a google.protobuf.Any
# holding a cel.expr.CheckedExpr, whose field 2 maps expression ids to References (field
# 1: the name; field 3: overload ids, which only functions have). The binding exposes no
# other view of it; the protobuf wire format is stable, and test_when pins this reading.


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def _fields(data: bytes) -> list[tuple[int, bytes | int]]:
    out: list[tuple[int, bytes | int]] = []
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
            out.append((number, value))
        elif wire == 2:
            size, i = _varint(data, i)
            out.append((number, data[i : i + size]))
            i += size
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"wire type {wire}")
    return out


def _reference_names(blob: bytes) -> set[str]:
    """Names of the variables (not functions) a serialised CheckedExpr refers to."""
    try:
        fields = dict(_fields(blob))  # Any: 1 type_url, 2 value
        checked = fields.get(2)
        if not isinstance(checked, bytes):
            return set()
        names: set[str] = set()
        for number, entry in _fields(checked):
            if number != 2 or not isinstance(entry, bytes):
                continue
            reference = dict(_fields(entry)).get(2)
            if not isinstance(reference, bytes):
                continue
            ref_fields = _fields(reference)
            if any(n == 3 for n, _ in ref_fields):
                continue  # a function's overloads
            name = next((v for n, v in ref_fields if n == 1), None)
            if isinstance(name, bytes):
                names.add(name.decode("utf-8", "replace"))
        return names
    except (ValueError, IndexError):
        return set()


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
