"""Why a ``when`` does not compile, in the words of the user's own text.

The checker's messages speak of the rewritten expression (escaped names, ``$(...)``
references turned into variables); this module maps positions back, names unknown steps
and results with a "did you mean", and tells which problems only a Task object can settle.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from sluice.core.cel import _STATUS_PREFIX, cel_name
from sluice.core.cel import dotted as _dotted
from sluice.core.references import Ref

if TYPE_CHECKING:
    from sluice.core.when import Scope

__all__ = ["Issue"]

# A reference written $(...) inside a when: any variable, any name (checked by the checker).
_WHEN_REF: Final = re.compile(
    r"\$\((params\.[A-Za-z_][A-Za-z0-9_.-]*|tasks\.status"
    r"|tasks\.[a-z0-9-]+\.(?:phase|status|results\.[a-z0-9-]+))\)",
    re.ASCII,
)
_ISSUE: Final = re.compile(r"ERROR: <input>:(\d+):(\d+): ([^\n]*)")
_UNDECLARED: Final = re.compile(r"undeclared reference to '([^']*)'(?: \(in container '[^']*'\))?")


@dataclass(frozen=True)
class Issue:
    """One problem of an expression, at a position of the text the user wrote."""

    line: int
    column: int
    message: str
    external: bool = False

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: {self.message}"


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
