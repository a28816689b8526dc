"""A matrixed step's combinations: their outcome, compact status, progress and admission.

Pure functions over :class:`Combination` records (one per combination, rebuilt by the
reconciler from the step's Jobs and ``status.tasks[].matrix.done``), so the same rules
serve the reconciler, its tests and the property tests:

* :func:`step_phase`: the step succeeds once ``required`` combinations succeeded and every
  other settled; it fails as soon as that can no longer happen (without ``minSuccess``,
  ``required`` is the width: one combination failing past its retries fails the step,
  and the others still finish, :func:`still_to_settle`);
* :func:`summarize`: the status (``api.MatrixStatus``): counts by phase, the succeeded
  indexes as ranges, details only for failed, retrying and running combinations, at most
  ``api.MAX_MATRIX_DETAILS`` of them;
* :func:`progress`: ``kubectl get pl``'s ``37/260``, counting combinations;
* :func:`admit`: which combinations start now under ``matrix.maxParallel`` and the
  pipeline's ``maxParallel`` (each running combination counts against both).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from sluice.api import CombinationStatus, MatrixStatus, TaskPhase
from sluice.api.matrix import MAX_MATRIX_DETAILS
from sluice.core.observe import JobView
from sluice.core.phases import T

__all__ = [
    "Combination",
    "Demand",
    "admit",
    "format_ranges",
    "jobs_by_combination",
    "parse_ranges",
    "progress",
    "running_counts",
    "step_phase",
    "still_to_settle",
    "summarize",
]

_SETTLED: Final = frozenset({T.SUCCEEDED, T.FAILED})
_DETAIL_ORDER: Final = (T.FAILED, T.RETRYING, T.RUNNING)
_MESSAGE_MAX: Final = 256
_RANGE = re.compile(r"^(\d{1,9})(?:-(\d{1,9}))?$")


@dataclass(frozen=True)
class Combination:
    """Where one combination stands (Pending, Running, Retrying, Succeeded or Failed)."""

    index: int
    phase: TaskPhase = T.PENDING
    attempts: int = 0
    job: str | None = None
    reason: str | None = None
    message: str | None = None


def step_phase(combos: Sequence[Combination], required: int) -> TaskPhase:
    """Succeeded once ``required`` succeeded and all settled; Failed once fewer than
    ``required`` can still succeed; else Running. ``required`` is
    ``matrix.parse_min_success``'s (the width by default)."""
    succeeded = failed = 0
    for c in combos:
        if c.phase is T.SUCCEEDED:
            succeeded += 1
        elif c.phase is T.FAILED:
            failed += 1
    if len(combos) - failed < required:
        return T.FAILED
    if succeeded >= required and succeeded + failed == len(combos):
        return T.SUCCEEDED
    return T.RUNNING


def still_to_settle(combos: Sequence[Combination]) -> list[int]:
    """Combinations that have not settled: after the step failed they still run to the end
    (unless the pipeline's ``failurePolicy`` is StopAll), so a recovery reruns only the
    failed ones."""
    return [c.index for c in combos if c.phase not in _SETTLED]


def format_ranges(indexes: Iterable[int]) -> str:
    """``0-36,40``: sorted, distinct indexes as ranges (the status's ``done``)."""
    out: list[str] = []
    start = prev = None
    for i in sorted(set(indexes)):
        if prev is not None and i == prev + 1:
            prev = i
            continue
        if start is not None:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
        start = prev = i
    if start is not None:
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ",".join(out)


def parse_ranges(text: str | None, width: int | None = None) -> set[int]:
    """The indexes of :func:`format_ranges`' text; what does not parse (or is not below
    ``width``) is left out: the status is the operator's, but never trusted to raise."""
    out: set[int] = set()
    for part in (text or "").split(","):
        m = _RANGE.match(part.strip())
        if m is None:
            continue
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if width is not None:
            hi = min(hi, width - 1)
        out.update(range(lo, hi + 1))
    return out


def _detail(c: Combination) -> CombinationStatus:
    message = c.message
    if message is not None and len(message) > _MESSAGE_MAX:
        message = message[: _MESSAGE_MAX - 1] + "…"
    return CombinationStatus(
        index=c.index,
        phase=c.phase,
        attempts=c.attempts,
        job=c.job,
        reason=c.reason,
        message=message,
    )


def summarize(combos: Sequence[Combination], limit: int = MAX_MATRIX_DETAILS) -> MatrixStatus:
    """The compact status of a matrixed step: O(1) in size but for ``done`` (ranges, short
    however wide the matrix when combinations succeed in order)."""
    counts = dict.fromkeys(TaskPhase, 0)
    by_phase: dict[TaskPhase, list[Combination]] = {p: [] for p in _DETAIL_ORDER}
    for c in combos:
        counts[c.phase] += 1
        if c.phase in by_phase:
            by_phase[c.phase].append(c)
    details = [_detail(c) for p in _DETAIL_ORDER for c in by_phase[p]][:limit]
    done = format_ranges(c.index for c in combos if c.phase is T.SUCCEEDED)
    return MatrixStatus(
        width=len(combos),
        pending=counts[T.PENDING],
        running=counts[T.RUNNING],
        retrying=counts[T.RETRYING],
        succeeded=counts[T.SUCCEEDED],
        failed=counts[T.FAILED],
        done=done or None,
        details=details,
    )


def progress(steps: Iterable[tuple[TaskPhase, MatrixStatus | None]]) -> str:
    """``succeeded/total`` over combinations: a plain step counts 1, a matrixed step its
    width (1 until its width is known)."""
    done = total = 0
    for phase, m in steps:
        if m is not None and m.width > 0:
            done += m.succeeded
            total += m.width
        else:
            done += phase is T.SUCCEEDED
            total += 1
    return f"{done}/{total}"


@dataclass(frozen=True)
class Demand:
    """What one step would start: ``candidates`` in order (due retries, then pending, by
    index; a plain step has ``[0]``), how many of its combinations run, its own cap."""

    step: str
    candidates: Sequence[int]
    running: int = 0
    max_parallel: int | None = None


def admit(
    demands: Sequence[Demand], *, running: int, max_parallel: int | None
) -> dict[str, list[int]]:
    """The combinations to start now, by step, in the steps' order: never more than
    ``max_parallel`` running in the pipeline (``running`` counts every running Job, plain
    steps and combinations alike) nor more than a step's own ``max_parallel``."""
    slots = float("inf") if max_parallel is None else max_parallel - running
    out: dict[str, list[int]] = {}
    for d in demands:
        if slots <= 0:
            break
        room = slots if d.max_parallel is None else min(slots, d.max_parallel - d.running)
        if room <= 0 or not d.candidates:
            continue
        take = list(d.candidates[: int(min(room, len(d.candidates)))])
        out[d.step] = take
        slots -= len(take)
    return out


def running_counts(statuses: Mapping[str, MatrixStatus | None], plain_running: int) -> int:
    """Jobs running in the pipeline: plain running steps plus running combinations."""
    return plain_running + sum(m.running for m in statuses.values() if m is not None)


def jobs_by_combination(views: Iterable[JobView], width: int) -> dict[int, list[JobView]]:
    """A matrixed step's Jobs by combination index, each list by attempt: what
    ``attempts.fold_jobs`` folds per combination as it folds a plain step's Jobs. Jobs
    without the label (the step was not matrixed when they ran) or with an index not
    below ``width`` (the matrix shrank) are left out: they are not combinations of this
    matrix, and the run's rules for a changed spec (the spec hash) apply to them."""
    out: dict[int, list[JobView]] = {}
    for v in views:
        if v.combination is not None and v.combination < width:
            out.setdefault(v.combination, []).append(v)
    for jobs in out.values():
        jobs.sort(key=lambda v: v.attempt)
    return out
