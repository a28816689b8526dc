"""What ``kubectl sluice`` shows: pure functions from Pipeline objects (plain dicts, as the
API server returns them) and a clock reading to lines of text.

Nothing here talks to the API server or reads the terminal: the caller passes a
:class:`Style` (colour or not, Unicode or ASCII, the terminal's width) and ``now``, so
every layout is unit-tested against golden files.

The status is read leniently from the raw dict (not through the pydantic models, whose
``extra="forbid"`` would make an older plugin fail on a newer operator's status fields).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sluice.core import dag
from sluice.kubectl_sluice.graph import to_dot, to_mermaid, without_status
from sluice.kubectl_sluice.model import PipelineView, Step, _span, duration, view
from sluice.kubectl_sluice.style import _ANSI as _ANSI  # the tests strip colour with it
from sluice.kubectl_sluice.style import (
    ASCII,
    MAX_NAME,
    MAX_PARENTS_SHOWN,
    PLAIN,
    Style,
    fit,
    one_line,
    visible_len,
)

__all__ = [
    "ASCII",
    "PLAIN",
    "PipelineView",
    "Step",
    "Style",
    "changes",
    "duration",
    "fit",
    "layout",
    "one_line",
    "render_get",
    "render_list",
    "to_dot",
    "to_mermaid",
    "view",
    "visible_len",
    "without_status",
]

# ----------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Row:
    """One line of the tree: a step, the lines drawn before it, and its parents if many."""

    step: Step
    prefix: str
    joins: tuple[str, ...] = ()


def _order(steps: Sequence[Step]) -> list[str]:
    deps = {s.name: list(s.depends_on) for s in steps}
    return dag.topological_order(deps) or list(deps)  # a cycle: the declared order


def layout(steps: Sequence[Step], unicode: bool = True) -> list[Row]:
    """The DAG as a tree: a step with one parent is drawn under it; a step with several
    parents (or none) starts a tree of its own, after all of its parents, and names them.

    Iterative, so a chain of thousands of steps does not hit the recursion limit.
    """
    by_name = {s.name: s for s in steps}
    order = _order(steps)
    position = {n: i for i, n in enumerate(order)}
    parents = {
        s.name: [d for d in dict.fromkeys(s.depends_on) if d in by_name and d != s.name]
        for s in steps
    }
    children: dict[str, list[str]] = {n: [] for n in by_name}
    roots: list[str] = []
    for name in order:
        ps = parents[name]
        if len(ps) == 1:
            children[ps[0]].append(name)
        else:
            roots.append(name)
    if unicode:
        tee, last, bar, gap = "├─", "└─", "│ ", "  "
    else:
        tee, last, bar, gap = "|-", "`-", "| ", "  "
    rows: list[Row] = []
    placed: set[str] = set()
    for root in sorted(roots, key=position.__getitem__):
        # (name, prefix for the name, prefix for its children)
        stack: list[tuple[str, str, str]] = [(root, "", "")]
        while stack:
            name, prefix, child_prefix = stack.pop()
            if name in placed:
                continue
            placed.add(name)
            joins = tuple(parents[name]) if len(parents[name]) > 1 else ()
            rows.append(Row(by_name[name], prefix, joins))
            kids = children[name]
            for i in range(len(kids) - 1, -1, -1):
                is_last = i == len(kids) - 1
                stack.append(
                    (
                        kids[i],
                        child_prefix + (last if is_last else tee),
                        child_prefix + (gap if is_last else bar),
                    )
                )
    # Anything a cycle left out, at the end, flat.
    rows.extend(Row(by_name[n], "") for n in order if n not in placed)
    return rows


def _joins_note(joins: Sequence[str], unicode: bool) -> str:
    if not joins:
        return ""
    shown = list(joins[:MAX_PARENTS_SHOWN])
    more = len(joins) - len(shown)
    text = ", ".join(shown) + (f", +{more}" if more else "")
    return (" ← " if unicode else " <- ") + text


def _blocked_by(v: PipelineView, step: Step) -> str:
    failed = {s.name for s in v.steps if s.phase == "Failed"}
    culprits = [n for n in _order(v.steps) if n in failed and n in dag.ancestors(v.deps, step.name)]
    if not culprits:
        return one_line(step.message) or "an upstream step failed"
    names = ", ".join(culprits[:MAX_PARENTS_SHOWN])
    if len(culprits) > MAX_PARENTS_SHOWN:
        names += f" and {len(culprits) - MAX_PARENTS_SHOWN} more"
    return f"blocked by {names} (Failed)"


def step_message(v: PipelineView, step: Step, now: datetime) -> str:
    """The one-line explanation shown for a step (empty for a step doing fine)."""
    if step.phase == "Blocked":
        return _blocked_by(v, step)
    detail = one_line(step.message)
    if v.namespace:  # "for pod NS/NAME": the namespace is known, the name is what tells
        detail = detail.replace(f" {v.namespace}/", " ")
    reason = step.reason or ""
    text = f"{reason}: {detail}" if reason and detail else reason or detail
    if step.phase == "Retrying":
        when = ""
        if step.next_retry_at is not None:
            left = (step.next_retry_at - now).total_seconds()
            when = f"next attempt in {duration(left)}" if left > 0 else "next attempt now"
        return "; ".join(p for p in (when, text) if p)
    if step.phase in ("Failed", "Skipped"):
        return text
    return ""


def _shorten(name: str, width: int) -> str:
    return name if len(name) <= width else name[: max(1, width - 1)] + "…"


def _table(rows: Sequence[Sequence[str]], visible: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to the widest visible cell; the last column is not padded."""
    if not rows:
        return []
    widths = [max(len(r[i]) for r in visible) for i in range(len(visible[0]))]
    out = []
    for painted, plain in zip(rows, visible, strict=True):
        cells = [
            p + " " * (widths[i] - len(plain[i])) if i < len(painted) - 1 else p
            for i, p in enumerate(painted)
        ]
        out.append("  ".join(cells).rstrip())
    return out


_FINALLY: Final = "finally:"
"""The row that heads the finally steps in ``get``."""


def render_get(v: PipelineView, now: datetime, style: Style = PLAIN) -> list[str]:
    """``kubectl sluice get``: a header, then the steps as a tree, one line each."""
    phase = v.phase or "Unknown"
    lines: list[str] = []

    def head(key: str, value: str) -> None:
        lines.append(f"{style.bold((key + ':').ljust(10))} {value}".rstrip())

    head("Pipeline", f"{v.name}" + (f" (namespace {v.namespace})" if v.namespace else ""))
    if v.seen:
        shown = style.paint(phase, f"{style.symbol(phase)} {phase}")
        extra = []
        if v.suspend:
            extra.append("suspended")
        if v.pending_request:
            extra.append(f"{v.pending_request} requested, not yet picked up")
        head("Phase", shown + (f" ({', '.join(extra)})" if extra else ""))
    else:
        head("Phase", "no status yet (the operator has not written one)")
    head("Progress", v.progress or f"0/{len(v.steps)}")
    head("Run", str(v.run) if v.run else "-")
    if v.next_run_at is not None:
        head("Next run", "in " + duration(_span(now, v.next_run_at, now)))
    age = duration(_span(v.created_at, None, now)) if v.created_at else "-"
    run_time = _span(v.started_at, v.finished_at, now)
    head(
        "Age",
        age
        + (
            f" (this run: {duration(run_time)}{'' if v.finished_at else ' so far'})"
            if run_time is not None
            else ""
        ),
    )
    if (
        v.generation is not None
        and v.observed_generation is not None
        and v.observed_generation < v.generation
    ):
        head("Note", "the spec changed; the operator has not caught up yet")
    head("Message", one_line(v.message) or "-")
    lines.append("")

    unicode = style.unicode
    painted: list[list[str]] = []
    plain: list[list[str]] = []
    header = ["STEP", "PHASE", "ATTEMPTS", "DURATION", "JOB", "MESSAGE"]
    painted.append([style.dim(h) for h in header])
    plain.append(header)
    rows = layout(v.main_steps, unicode)
    if v.finally_steps:
        rows.append(Row(Step(name="", phase=""), _FINALLY))
        rows.extend(layout(v.finally_steps, unicode))
    for row in rows:
        if row.prefix == _FINALLY:  # the line between the main steps and the finally ones
            painted.append([style.dim(_FINALLY), "", "", "", "", ""])
            plain.append([_FINALLY, "", "", "", "", ""])
            continue
        s = row.step
        sym = style.symbol(s.phase)
        note = _joins_note(row.joins, unicode)
        room = MAX_NAME - len(row.prefix) - len(sym) - 1 - len(note)
        name = _shorten(s.name, max(room, 8))
        cell_plain = f"{row.prefix}{sym} {name}{note}"
        cell = f"{style.dim(row.prefix)}{style.paint(s.phase, sym)} {name}{style.dim(note)}"
        dur = duration(_span(s.started_at, s.finished_at, now)) if s.started_at else "-"
        msg = step_message(v, s, now)
        values = [s.phase, str(s.attempts), dur, s.job or "-", msg]
        painted.append([cell, style.paint(s.phase, s.phase), *values[1:]])
        plain.append([cell_plain, *values])
    lines.extend(_table(painted, plain))
    return [fit(line, style.width) for line in lines]


# ----------------------------------------------------------------------------- list


def render_list(
    views: Iterable[PipelineView], now: datetime, style: Style = PLAIN, namespaces: bool = False
) -> list[str]:
    """``kubectl sluice list``: one line per pipeline."""
    vs = list(views)
    schedules = any(v.next_run_at is not None for v in vs)
    header = ["NAME", "PHASE", "PROGRESS", "RUN", "LAST RUN", "AGE"]
    if namespaces:
        header.insert(0, "NAMESPACE")
    if schedules:
        header.append("NEXT RUN")
    header.append("MESSAGE")
    painted = [[style.dim(h) for h in header]]
    plain = [header]
    for v in sorted(vs, key=lambda v: (v.namespace, v.name)):
        phase = v.phase or "-"
        run_time = _span(v.started_at, v.finished_at, now)
        last = "-" if run_time is None else duration(run_time)
        if run_time is not None and v.finished_at is None:
            last += " (running)"
        cells = [
            v.name,
            phase,
            v.progress or f"0/{len(v.steps)}",
            str(v.run) if v.run else "-",
            last,
            duration(_span(v.created_at, None, now)) if v.created_at else "-",
        ]
        if namespaces:
            cells.insert(0, v.namespace)
        if schedules:
            cells.append(
                "-" if v.next_run_at is None else "in " + duration(_span(now, v.next_run_at, now))
            )
        cells.append(one_line(v.message))
        plain.append(cells)
        col = 2 if namespaces else 1
        p = list(cells)
        p[col] = style.paint(phase, phase)
        painted.append(p)
    return [fit(line, style.width) for line in _table(painted, plain)]


# ----------------------------------------------------------------------------- watch lines


def changes(old: PipelineView | None, new: PipelineView, now: datetime) -> list[str]:
    """What changed between two views, one line each (``get -w`` when not on a terminal)."""
    stamp = now.strftime("%H:%M:%S")
    out: list[str] = []
    before = {s.name: s for s in old.steps} if old is not None else {}
    if old is None or (old.phase, old.progress, old.run) != (new.phase, new.progress, new.run):
        phase = new.phase or "no status yet"
        msg = one_line(new.message)
        out.append(
            f"{stamp} pipeline {new.name}: {phase} {new.progress or '-'} (run {new.run or '-'})"
            + (f": {msg}" if msg else "")
        )
    same_run = old is not None and old.run == new.run
    for s in new.steps:
        prev = before.get(s.name)
        if prev is not None and (prev.phase, prev.attempts) == (s.phase, s.attempts):
            continue
        if old is None and s.phase == "Pending":
            continue
        was = prev.phase if prev else None
        if prev is not None and same_run:
            retried = _unseen_retries(prev, s)
            for attempt in retried:
                out.append(
                    f"{stamp} step {s.name}: {was} -> Retrying (attempt {attempt}): attempt "
                    f"{attempt} failed and was retried (between two updates of the status)"
                )
                was = "Retrying"
            if retried and s.phase == "Retrying":
                was = None  # not "Retrying -> Retrying": the attempt between went unseen too
        text = f"{stamp} step {s.name}: {was + ' -> ' if was else ''}{s.phase}"
        if s.attempts:
            text += f" (attempt {s.attempts})"
        msg = step_message(new, s, now)
        out.append(text + (f": {msg}" if msg else ""))
    return out


def _unseen_retries(prev: Step, step: Step) -> list[int]:
    """The attempts of a step that were retried between two views without either showing
    it ``Retrying``: a retry can go Running -> Retrying -> Running within one status write
    (writes of a pipeline are coalesced), and a watch only sees what was written.

    Within one run the attempt count only grows by retries: by the retry policy from
    ``Pending``, ``Running`` or ``Retrying``, or by ``kubectl sluice retry`` of a ``Failed``
    (or blocked) step, which is no ``Retrying`` and is not counted here."""
    if prev.phase not in ("Pending", "Running", "Retrying") or step.attempts <= prev.attempts:
        return []
    first = prev.attempts + 1 if prev.phase == "Retrying" or prev.attempts == 0 else prev.attempts
    return list(range(first, step.attempts))
