"""Fan-out in the reconcile stages: a matrixed step's combinations folded, started, written.

The rules are ``sluice.core.matrix`` (order, params, width, ``minSuccess``) and
``sluice.core.matrix_status`` (outcome, compact status, admission); this module applies
them to one reconcile's Decision ``d``, as ``sluice.core.attempts`` and
``sluice.core.gates`` do for a plain step (docs/fan-out.md, "How it plugs into the
reconcile stages").

Memory and evidence
    Each combination is its own Job per attempt, named and labelled with its index
    (``naming.job_name(..., combination)``): the Jobs of the run are the evidence, folded
    by combination as a plain step's are (attempt from the label, retry base from the
    annotation). The status keeps what must outlive the Jobs: ``matrix.done`` (the
    succeeded indexes as ranges), ``matrix.reopened`` (failed combinations given a fresh
    budget and not started again yet), the failed combinations among ``details``, and the
    results, one JSON array per declared result in combination order.

Crash safety
    A combination's next Job is always ``attempt = latest attempt seen + 1``: a restarted
    operator derives the very name of a Job it created but had not seen, and gets
    ``AlreadyExists`` instead of a second Job.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sluice.api import CombinationStatus, FailureKind, MatrixStatus, TaskStatus
from sluice.core import harvest, retry
from sluice.core import matrix as mx
from sluice.core import matrix_status as ms
from sluice.core.conditions import timed_out
from sluice.core.dataflow import ResultValue
from sluice.core.decision import Decision
from sluice.core.jobspec import Combo, ResolvedStep
from sluice.core.matrix_status import Combination
from sluice.core.observe import JobView
from sluice.core.phases import T

__all__ = [
    "Fanout",
    "axes_of",
    "begin",
    "fold",
    "progress",
    "reopen",
    "running",
    "started",
    "when_results",
    "write",
]

_READ_AGAIN_SECONDS = 5


@dataclass
class Fanout:
    """Where one matrixed step's combinations stand in this reconcile."""

    res: ResolvedStep
    axes: list[mx.Axis]
    required: int
    combos: list[Combination]
    bases: list[int]
    """Each combination's retry base (attempts at which its current budget began)."""
    due: list[int] = field(default_factory=list)
    """Combinations whose retry is due now, by index."""
    results: list[dict[str, str] | None] = field(default_factory=list)
    reopened: set[int] = field(default_factory=set)

    def candidates(self) -> list[int]:
        """Due retries, then pending combinations, by index (``matrix_status.Demand``)."""
        return [*self.due, *(c.index for c in self.combos if c.phase is T.PENDING)]

    def running(self) -> int:
        return sum(1 for c in self.combos if c.phase is T.RUNNING)

    def combo(self, index: int) -> Combo:
        """The matrix params' values of combination ``index``, for its Job."""
        literal = frozenset(a.name for a in self.axes if a.literal)
        return Combo(index, mx.combination(self.axes, index), literal)


def axes_of(d: Decision, name: str, res: ResolvedStep) -> list[mx.Axis]:
    """The step's axes (raises ``KeyError`` while a producer's result is missing and
    ``matrix.InvalidMatrix`` for a bad value or a width over the cap)."""
    assert res.matrix is not None
    found = mx.static_axes(res.matrix)
    if found is None:
        results = {n: s.results or {} for n, s in d.steps.items()}
        found = mx.axes(name, res.matrix, results)
    mx.check_width(name, found, d.max_matrix)
    return found


def begin(d: Decision, ts: TaskStatus, res: ResolvedStep) -> Fanout | str:
    """A matrixed step the gates let run: its combinations, all pending; or why not
    (``InvalidMatrix: ...`` or ``EmptyMatrix``)."""
    state = d.fanout.get(ts.name)
    if state is not None:
        return state
    assert res.matrix is not None
    try:
        axes = axes_of(d, ts.name, res)
        width = mx.width(axes)
        if width == 0:
            return mx.EMPTY_MATRIX
        required = mx.parse_min_success(ts.name, res.matrix.min_success, width)
    except mx.InvalidMatrix as err:
        return f"{mx.INVALID_MATRIX}: {err}"
    except KeyError as err:
        return f"{mx.INVALID_MATRIX}: no value for {err.args[0]} yet"
    state = Fanout(
        res,
        axes,
        required,
        [Combination(i) for i in range(width)],
        [0] * width,
        results=[None] * width,
    )
    d.fanout[ts.name] = state
    return state


# ---------------------------------------------------------------------- fold in the Jobs


def fold(d: Decision, ts: TaskStatus, res: ResolvedStep, jobs: Sequence[JobView]) -> None:
    """The combinations of a matrixed step from its Jobs of the run and its status; writes
    the step (phase, attempts, ``matrix``, results). Nothing to do before it started."""
    if (not jobs and ts.matrix is None) or timed_out(d.status):
        return  # not started; or the run timed out, which settled every step
    assert res.matrix is not None
    try:
        axes = axes_of(d, ts.name, res)
        width = mx.width(axes)
        required = mx.parse_min_success(ts.name, res.matrix.min_success, width)
    except (KeyError, mx.InvalidMatrix):
        return  # decided at the gate; nothing of this width was started
    old = ts.matrix or MatrixStatus()
    done = ms.parse_ranges(old.done, width)
    state = Fanout(res, axes, required, [], [], results=_arrays(ts, res, width))
    state.reopened = ms.parse_ranges(old.reopened, width)
    known = {c.index: c for c in old.details}
    by_index = ms.jobs_by_combination(jobs, width)
    used = harvest.used_bytes([*(s.results for s in d.steps.values()), d.status.results])
    for i in range(width):
        history = by_index.get(i, [])
        latest = history[-1] if history else None
        if i in done:
            attempts = latest.attempt if latest else 1
            combo = Combination(i, T.SUCCEEDED, attempts, latest.name if latest else None)
            base = latest.retry_base if latest else 0
        elif latest is None:
            combo, base = _without_jobs(d, state, i, known.get(i)), 0
        else:
            combo, base = _fold_latest(d, state, i, latest, used)
        state.combos.append(combo)
        state.bases.append(base)
    d.fanout[ts.name] = state
    write(d, ts, state)


def _without_jobs(
    d: Decision, state: Fanout, i: int, known: CombinationStatus | None
) -> Combination:
    """A combination none of whose Jobs exist: Pending if it never ran; Failed as the status
    remembers it (its Jobs went with the run's TTL); a running attempt whose Job was
    deleted fails (``JobDeleted``, a pod failure for the retry policy), as a plain step's."""
    if known is None:
        return Combination(i)
    if known.phase is T.FAILED:
        return Combination(i, T.FAILED, known.attempts, known.job, known.reason, known.message)
    if known.phase is T.RUNNING and known.attempts and known.job:
        gone = JobView(
            name=known.job,
            task=state.res.name,
            run=d.status.run,
            attempt=known.attempts,
            retry_base=0,
            spec_hash=None,
            state="Failed",
            reason=None,
            message=None,
            created_at=None,
            finished_at=d.now,
            deleting=False,
            combination=i,
        )
        message = f"Job {known.job} was deleted while running"
        return _failed(d, state, i, gone, "JobDeleted", message, FailureKind.POD_FAILURE, False)
    return Combination(i, T.PENDING, known.attempts, known.job)


def _arrays(ts: TaskStatus, res: ResolvedStep, width: int) -> list[dict[str, str] | None]:
    """Each combination's results as recorded in the step's arrays (None: none yet)."""
    out: list[dict[str, str] | None] = [None] * width
    done = ms.parse_ranges(ts.matrix.done if ts.matrix else None, width)
    arrays: dict[str, list[str]] = {}
    for name in res.results:
        try:
            value = json.loads((ts.results or {}).get(name, "[]"))
        except ValueError:
            value = []
        arrays[name] = [str(v) for v in value] if isinstance(value, list) else []
    for i in done:
        out[i] = {n: (a[i] if i < len(a) else "") for n, a in arrays.items()}
    return out


def _fold_latest(
    d: Decision, state: Fanout, i: int, job: JobView, used: int
) -> tuple[Combination, int]:
    """One combination from its latest Job: Running, Succeeded, Retrying, Failed, or
    Pending again (reopened)."""
    if job.state == "Active" or (job.state == "Succeeded" and i in state.reopened):
        state.reopened.discard(i)
    if job.state == "Active":
        return Combination(i, T.RUNNING, job.attempt, job.name), job.retry_base
    if job.state == "Succeeded":
        if not state.res.results:
            return Combination(i, T.SUCCEEDED, job.attempt, job.name), job.retry_base
        found = harvest.harvest(
            job.name, d.pods.get(job.name), state.res.results, step=state.res.name, used=used
        )
        if found is None:
            d.due_in(d.now + timedelta(seconds=_READ_AGAIN_SECONDS))
            return Combination(i, T.RUNNING, job.attempt, job.name), job.retry_base
        if not isinstance(found, harvest.Unreadable):
            state.results[i] = found
            return Combination(i, T.SUCCEEDED, job.attempt, job.name), job.retry_base
        words = (found.reason, found.message, found.kind, found.final)
    else:
        kind = retry.classify_job_failure(job.reason, job.message)
        reason, message = retry.failure_words(job.reason, job.message, kind)
        words = (reason, message, kind, False)
    if i in state.reopened:
        return Combination(i, T.PENDING, job.attempt, job.name), job.attempt
    return _failed(d, state, i, job, *words), job.retry_base


def _failed(
    d: Decision,
    state: Fanout,
    i: int,
    job: JobView,
    reason: str,
    message: str,
    kind: FailureKind,
    final: bool,
) -> Combination:
    """A failed attempt of combination ``i``: Retrying (due now or later) or Failed."""
    policy = state.res.retry
    used = job.attempt - job.retry_base
    if retry.may_retry(kind, reason, policy, final=final) and used <= policy.limit:
        delay = retry.policy_delay(policy, used)
        when: datetime = (job.finished_at or d.now) + timedelta(seconds=math.ceil(delay))
        if when <= d.now:
            state.due.append(i)
        else:
            d.due_in(when)
        return Combination(i, T.RETRYING, job.attempt, job.name, reason, message)
    return Combination(i, T.FAILED, job.attempt, job.name, reason, message)


# ---------------------------------------------------------------------- start, write


def started(state: Fanout, index: int, job: str) -> None:
    """Combination ``index`` got a new attempt's Job ``job``."""
    c = state.combos[index]
    if c.phase is T.PENDING and index in state.reopened:
        state.reopened.discard(index)
    state.combos[index] = Combination(index, T.RUNNING, c.attempts + 1, job)
    if index in state.due:
        state.due.remove(index)


def running(d: Decision) -> int:
    """Jobs running in the pipeline: running plain steps plus running combinations."""
    count = 0
    for name, ts in d.steps.items():
        state = d.fanout.get(name)
        if state is not None:
            count += state.running()
        elif ts.phase == T.RUNNING:
            count += 1
    return count


def write(d: Decision, ts: TaskStatus, state: Fanout) -> None:
    """The step's status from its combinations: phase (``step_phase``), attempts (the
    sum), ``matrix`` (``summarize``), results (arrays) and, on settling, reason, message,
    finish time and an Event."""
    combos = state.combos
    summary = ms.summarize(combos)
    summary.reopened = ms.format_ranges(state.reopened) or None
    ts.matrix = summary
    ts.attempts = sum(c.attempts for c in combos)
    if state.res.results:
        arrays = mx.results_array(state.res.results, state.results)
        ts.results = {
            n: json.dumps(v, ensure_ascii=False, separators=(",", ":")) for n, v in arrays.items()
        }
    if ts.attempts == 0 and ts.phase == T.PENDING:
        return  # nothing started yet
    phase = ms.step_phase(combos, state.required)
    if phase == ts.phase:
        return
    if phase is T.SUCCEEDED:
        ts.finished_at = d.now
        ts.reason, ts.message = "Completed", None
    elif phase is T.FAILED:
        first = next(c for c in combos if c.phase is T.FAILED)
        params = ", ".join(f"{k}={v}" for k, v in mx.combination(state.axes, first.index).items())
        ts.finished_at = d.now
        ts.reason = first.reason
        ts.message = f"combination {first.index} ({params}): {first.message or first.reason}"
        d.event("Warning", "TaskFailed", f'Task "{ts.name}" failed: {ts.reason}: {ts.message}.')
    else:
        ts.finished_at = None
        if ts.phase is T.PENDING:
            ts.reason = ts.message = None
    ts.next_retry_at = None
    d.move(ts, phase)


def reopen(d: Decision, ts: TaskStatus, reason: str, message: str) -> None:
    """A failed matrixed step's failed combinations get a fresh budget; the others stay."""
    state = d.fanout.get(ts.name)
    if state is None:
        return
    for c in state.combos:
        if c.phase is T.FAILED:
            state.reopened.add(c.index)
            state.combos[c.index] = replace(c, phase=T.PENDING, reason=None, message=None)
            state.bases[c.index] = c.attempts
    ts.reason, ts.message = reason, message
    write(d, ts, state)
    d.event("Normal", reason, message[0].upper() + message[1:] + ".")


def when_results(d: Decision) -> dict[str, Mapping[str, ResultValue]]:
    """The steps' results as a ``when`` sees them: a matrixed step's as lists."""
    out: dict[str, Mapping[str, ResultValue]] = {}
    for name, ts in d.steps.items():
        recorded = ts.results or {}
        if name in d.matrixed and recorded:
            out[name] = {k: _as_list(v) for k, v in recorded.items()}
        else:
            out[name] = recorded
    return out


def _as_list(text: str) -> list[str]:
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def progress(d: Decision, names: Sequence[str]) -> str:
    """``kubectl get pl``'s PROGRESS when a step fans out: combinations count one each
    (a skipped step counts as done, as ``settle.progress`` has it)."""
    done = total = 0
    for name in names:
        ts = d.step(name)
        if ts.matrix is not None and ts.matrix.width > 0:
            done += ts.matrix.succeeded
            total += ts.matrix.width
        else:
            done += ts.phase in (T.SUCCEEDED, T.SKIPPED)
            total += 1
    return f"{done}/{total}"
