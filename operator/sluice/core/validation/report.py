"""Findings, reports and the words they are written in (quoting, suggestions)."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pydantic import ValidationError

from sluice.api import PipelineSpec, TaskSpec
from sluice.core.dataflow import Flow

__all__ = [
    "MAX_LISTED",
    "MAX_OBJECT_BYTES",
    "STATUS_BYTES_PER_TASK",
    "Finding",
    "Report",
    "Severity",
    "did_you_mean",
    "field_name",
    "invalid_message",
    "names_list",
    "pydantic_problems",
    "quote",
    "twice",
]

Severity = Literal["error", "warning"]

MAX_LISTED: Final = 10
"""Problems listed in one message; the rest are counted ("and 3 more")."""

MAX_OBJECT_BYTES: Final = 1_572_864
"""The largest object etcd stores by default (--max-request-bytes, 1.5 MiB)."""

STATUS_BYTES_PER_TASK: Final = 480
"""Generous size of one task's entry in ``status.tasks`` as JSON (long names, a failure
message): what a pipeline must leave room for besides its spec."""

_MAX_WARNING: Final = 256
"""Characters of one admission warning the API server passes on for certain."""

_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_PLAIN = re.compile(r"[-\w.:/@ ]*", re.ASCII)  # needs no escaping in a JSON string


@dataclass(frozen=True)
class Finding:
    """One problem, in a sentence fragment that names it."""

    severity: Severity
    message: str
    step: str | None = None
    """The pipeline step it concerns, when it only stops that step (the reconciler
    ignores it once the step has succeeded); None for the pipeline as a whole."""
    external: bool = False
    """It depends on a Task object, which may be applied or changed later."""


@dataclass
class Report:
    """The findings about one object, in a stable order (the spec's)."""

    kind: Literal["pipeline", "task"]
    findings: list[Finding] = field(default_factory=list)
    pipeline: PipelineSpec | None = None
    """The parsed Pipeline spec, when it parses."""
    task: TaskSpec | None = None
    """The parsed Task spec, when it parses (check_task only)."""
    tasks: dict[str, TaskSpec] = field(default_factory=dict)
    """Referenced Tasks that exist and are valid, parsed (check_pipeline only)."""
    flow: Flow | None = None
    """The pipeline's data flow (``sluice.core.dataflow``), when its spec parses."""

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def message(self, findings: Iterable[Finding] | None = None) -> str:
        """``Invalid pipeline: ...; ....`` over ``findings`` (default: every error)."""
        chosen = self.errors if findings is None else list(findings)
        return invalid_message(self.kind, [f.message for f in chosen])

    def refusal(self) -> str | None:
        """What the webhook answers: the message of the errors in the object itself."""
        own = [f for f in self.errors if not f.external]
        return self.message(own) if own else None

    def advice(self, limit: int = MAX_LISTED) -> list[str]:
        """What the webhook sends as warnings: external errors, then warnings.

        At most ``limit`` of at most 256 characters each: the API server may cut longer
        warnings and drops those past 4 KiB in all.
        """
        notes = [f.message for f in self.errors if f.external]
        notes += [f.message for f in self.warnings]
        if len(notes) > limit:
            notes = [*notes[: limit - 1], f"and {len(notes) - limit + 1} more warnings"]
        return [n if len(n) <= _MAX_WARNING else n[: _MAX_WARNING - 1] + "…" for n in notes]

    def add(
        self,
        severity: Severity,
        message: str,
        step: str | None = None,
        external: bool = False,
    ) -> None:
        self.findings.append(Finding(severity, message, step, external))


def invalid_message(kind: str, problems: Sequence[str]) -> str:
    """``Invalid pipeline: p1; p2.``: at most MAX_LISTED problems, the rest counted."""
    shown = list(problems[:MAX_LISTED])
    if len(problems) > MAX_LISTED:
        shown.append(f"and {len(problems) - MAX_LISTED} more")
    return f"Invalid {kind}: " + "; ".join(shown) + "."


def quote(value: Any, limit: int = 60) -> str:
    """A user value, quoted and shortened for a message."""
    if isinstance(value, str) and len(value) <= limit and _PLAIN.fullmatch(value):
        return f'"{value}"'  # the common case, cheaply
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return json.dumps(text, ensure_ascii=False)


def field_name(key: Any) -> str:
    """A user-supplied field name inside a path: as is when plain, else quoted
    (a key may hold a newline or be very long; a message stays one short line)."""
    text = str(key)
    return text if len(text) <= 60 and _PLAIN.fullmatch(text) else quote(text)


def names_list(values: Iterable[str], limit: int = 8) -> str:
    items = [quote(v, 40) for v in values]
    if len(items) > limit:
        items = [*items[:limit], "..."]
    return ", ".join(items)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.75)
    return f" (did you mean {quote(match[0])}?)" if match else ""


def pydantic_problems(err: ValidationError, root: str, limit: int = 5) -> list[str]:
    out = []
    for e in err.errors()[:limit]:
        loc = root
        for part in e["loc"]:
            if isinstance(part, int):
                loc += f"[{part}]"
            elif _FIELD.fullmatch(part):
                loc += f".{part}"
            else:  # an unknown key: user input
                loc += f"[{quote(part, 30)}]"
        msg = str(e["msg"]).removeprefix("Value error, ")[:200]
        out.append(f"{loc}: {msg}")
    more = len(err.errors()) - limit
    if more > 0:
        out.append(f"{more} more schema errors")
    return out


def twice(names: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    twice: list[str] = []
    for n in names:
        if n in seen and n not in twice:
            twice.append(n)
        seen.add(n)
    return twice
