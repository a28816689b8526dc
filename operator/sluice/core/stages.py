"""The stages of one reconcile, in the order ``sluice.core.reconcile.decide`` runs them.

Each stage works on the :class:`~sluice.core.decision.Decision` ``d`` and says what it
reads and what it writes. ``d.status`` is the run's memory, the Jobs (``JobView``) are
the evidence; the plan (``d.plan``) collects what the shell is to do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import timedelta

from sluice.api import (
    RERUN_ANNOTATION,
    FailureKind,
    PipelinePhase,
    PipelineSpec,
    TaskStatus,
)
from sluice.core import dag, dataflow, references, validation
from sluice.core.attempts import fold_jobs, reopen_fixed
from sluice.core.conditions import (
    conditions_for,
    phase_and_message,
    set_condition,
    set_conditions,
    timed_out,
)
from sluice.core.decision import Decision
from sluice.core.jobspec import ResolvedStep, build_job
from sluice.core.observe import JobView
from sluice.core.phases import P, T

__all__ = [
    "PipelineRef",
    "block_dependents",
    "choose_run",
    "collect",
    "fail_invalid",
    "fold_jobs",
    "is_terminal",
    "reopen_fixed",
    "schedule",
    "stop_older_runs",
    "summarise",
    "time_out",
]

_T = T
_P = P
_WAITING = frozenset({_T.PENDING, _T.BLOCKED})
_ACTIVE = frozenset({_T.RUNNING, _T.RETRYING})


class PipelineRef:
    """Who the Jobs belong to: the Pipeline's name, namespace and uid."""

    __slots__ = ("name", "namespace", "uid")

    def __init__(self, name: str, namespace: str, uid: str) -> None:
        self.name, self.namespace, self.uid = name, namespace, uid


# ---------------------------------------------------------------------- choose the run


def choose_run(
    d: Decision,
    views: Sequence[JobView],
    rerun: str | None,
    retry_token: str | None,
    spec_ok: bool,
) -> None:
    """Adopt a run the Jobs show, start the first one, or start a requested rerun.

    Reads the Jobs' run numbers, the rerun/retry annotations, ``status.run`` and
    ``handledRerun``. Writes ``status`` (run, times, phase, tasks, handled tokens) and
    a RunStarted/RerunRequested Event.
    """
    st = d.status
    newest_job_run = max((v.run for v in views), default=0)
    if newest_job_run > st.run:
        # We started a run and died before recording it: adopt it.
        _start_run(d, newest_job_run, rerun, retry_token, adopted=True)
    elif st.run == 0 and spec_ok:
        _start_run(d, 1, rerun, retry_token)
    elif st.run > 0 and rerun is not None and rerun != st.handled_rerun:
        _start_run(d, st.run + 1, rerun, retry_token)
        d.event(
            "Normal", "RerunRequested", f"Run {st.run} started on request ({RERUN_ANNOTATION})."
        )


def _start_run(
    d: Decision, run: int, rerun: str | None, retry_token: str | None, adopted: bool = False
) -> None:
    st = d.status
    st.run = run
    st.started_at = d.now
    st.finished_at = None
    st.first_result = None
    st.results = None
    st.phase = _P.PENDING
    st.handled_rerun = rerun
    st.handled_retry = retry_token
    d.steps = {}
    st.tasks = []
    if not adopted:
        d.event("Normal", "RunStarted", f"Run {run} started.")


def stop_older_runs(d: Decision, views: Sequence[JobView]) -> None:
    """A rerun replaces the run before it: its active Jobs are deleted.

    Reads the Jobs and ``status.run``; writes ``plan.delete``.
    """
    for v in views:
        if v.run < d.status.run and v.state == "Active" and not v.deleting:
            d.plan.delete.append(v.name)


# ---------------------------------------------------------------------- block dependents


def block_dependents(
    d: Decision, step_names: Sequence[str], deps: Mapping[str, Sequence[str]]
) -> set[str]:
    """Steps downstream of a failed one are Blocked; unblocked when it is fixed.

    Reads the steps' phases and the dependencies; writes the phases of waiting steps.
    Returns the failed steps.
    """
    failed = {n for n in step_names if d.phase(n) == _T.FAILED}
    blocked = dag.dependents(deps, failed)
    for n in step_names:
        ts = d.step(n)
        if n in blocked and ts.phase in _WAITING:
            if ts.phase != _T.BLOCKED:
                ts.reason, ts.message = "UpstreamFailed", "an upstream task failed"
            d.move(ts, _T.BLOCKED)
        elif ts.phase == _T.BLOCKED and n not in blocked:
            ts.reason = ts.message = None
            d.move(ts, _T.PENDING)
    return failed


# ---------------------------------------------------------------------- time out


def time_out(d: Decision, spec: PipelineSpec, run_jobs: Sequence[JobView]) -> bool:
    """Fail the run when it is past ``timeoutSeconds``; else ask to be woken at the deadline.

    Reads ``status.startedAt`` and the clock. Writes, on a timeout, every unfinished
    step, the run's phase, message and Succeeded condition, ``plan.delete`` (the run's
    active Jobs) and an Event. Returns whether the run timed out now.
    """
    st = d.status
    if not (spec.timeout_seconds and st.started_at):
        return False
    deadline = st.started_at + timedelta(seconds=spec.timeout_seconds)
    if d.now < deadline:
        d.due_in(deadline)
        return False
    for v in run_jobs:
        if v.state == "Active" and not v.deleting:
            d.plan.delete.append(v.name)
    for t in spec.tasks:
        ts = d.step(t.name)
        if ts.phase in _ACTIVE:
            ts.finished_at = d.now
            ts.reason, ts.message = "PipelineTimeout", "the pipeline ran out of time"
            ts.next_retry_at = None
            d.move(ts, _T.FAILED, FailureKind.DEADLINE_EXCEEDED)
        elif ts.phase in _WAITING:
            ts.reason, ts.message = "PipelineTimeout", "not started before the pipeline timed out"
            d.move(ts, _T.SKIPPED)
    st.phase = _P.FAILED
    st.finished_at = d.now
    if st.first_result is None:
        st.first_result = d.plan.run_finished = str(_P.FAILED)
    st.message = f"The pipeline timed out after {spec.timeout_seconds}s."
    st.conditions = set_condition(
        st.conditions, "Succeeded", "False", "Timeout", st.message, d.now, None
    )
    d.event("Warning", "Timeout", st.message)
    return True


# ---------------------------------------------------------------------- schedule


def schedule(
    d: Decision,
    spec: PipelineSpec,
    deps: Mapping[str, Sequence[str]],
    resolved: Mapping[str, ResolvedStep],
    owner: PipelineRef,
) -> None:
    """Start due retries, then ready steps, within ``maxParallel``.

    Reads the steps' phases and retry times, the dependencies and the resolved steps.
    Writes ``plan.create`` (one Job per attempt started), the started steps (Running)
    and the wake-up time of the next retry.
    """
    running = sum(1 for t in spec.tasks if d.phase(t.name) == _T.RUNNING)
    slots = math.inf if spec.max_parallel is None else spec.max_parallel - running
    for step_name in _startable(d, spec, deps):
        if slots <= 0:
            break
        res = resolved.get(step_name)
        if res is None:
            continue
        _start_attempt(d, d.step(step_name), res, owner)
        slots -= 1


def _startable(d: Decision, spec: PipelineSpec, deps: Mapping[str, Sequence[str]]) -> list[str]:
    """Retries that are due, then Pending steps whose dependencies all succeeded."""
    succeeded = {t.name for t in spec.tasks if d.phase(t.name) == _T.SUCCEEDED}
    due_retries, ready = [], []
    for step in spec.tasks:
        ts = d.step(step.name)
        if ts.phase == _T.RETRYING and ts.next_retry_at is not None:
            if ts.next_retry_at <= d.now:
                due_retries.append(step.name)
            else:
                d.due_in(ts.next_retry_at)
        elif ts.phase == _T.PENDING and all(dep in succeeded for dep in deps[step.name]):
            ready.append(step.name)
    return due_retries + ready


def _start_attempt(d: Decision, ts: TaskStatus, res: ResolvedStep, owner: PipelineRef) -> None:
    refs = d.text_refs.get(res.name)
    values = None
    if refs:
        recorded = {n: s.results for n, s in d.steps.items() if s.results}
        values = dataflow.text_values(refs, results=recorded)
    try:
        manifest = build_job(
            pipeline=owner.name,
            namespace=owner.namespace,
            pipeline_uid=owner.uid,
            step=res,
            run=d.status.run,
            attempt=ts.attempts + 1,
            retry_base=ts.retry_base,
            values=values,
        )
    except references.MissingValueError as err:
        # The producers succeeded without these results (their Task changed since?).
        ts.reason, ts.message = "MissingResults", f'task "{ts.name}": {err}'
        ts.finished_at = d.now
        d.move(ts, _T.FAILED)
        d.event("Warning", "TaskFailed", f"{ts.message[0].upper()}{ts.message[1:]}.")
        return
    ts.attempts += 1
    ts.results = None
    d.plan.create.append(manifest)
    ts.job = manifest["metadata"]["name"]
    ts.spec_hash = res.spec_hash
    if ts.started_at is None or (ts.phase == _T.PENDING and ts.attempts == ts.retry_base + 1):
        ts.started_at = d.now
    ts.finished_at = None
    ts.next_retry_at = None
    if ts.phase == _T.PENDING:
        ts.reason = ts.message = None
    d.move(ts, _T.RUNNING)


# ---------------------------------------------------------------------- summarise


def summarise(d: Decision, spec: PipelineSpec, generation: int | None) -> None:
    """The run's phase, progress, message, finish time, conditions and phase Events.

    Reads the steps' phases and ``spec.suspend``. Writes ``status`` (phase, progress,
    message, finishedAt, conditions), ``plan.run_finished`` and Events.
    """
    st = d.status
    steps = [(t.name, d.phase(t.name)) for t in spec.tasks]
    phases = [p for _, p in steps]
    total = len(phases)
    st.progress = f"{phases.count(_T.SUCCEEDED)}/{total}"
    active = any(p in _ACTIVE for p in phases)
    old_phase = st.phase
    st.phase, st.message = phase_and_message(st, steps)
    if spec.suspend and st.phase in (_P.PENDING, _P.RUNNING):
        st.message = "Suspended: no new tasks start. " + (st.message or "")

    finished = st.phase in (_P.SUCCEEDED, _P.FAILED) or (st.phase == _P.DEGRADED and not active)
    if finished and st.finished_at is None:
        st.finished_at = d.now
        if st.first_result is None:
            # One count per run (the run metrics): its first settled result.
            st.first_result = str(st.phase)
            d.plan.run_finished = st.first_result
    elif not finished:
        st.finished_at = None

    if st.phase != old_phase:
        _phase_events(d, old_phase, total)
    if st.phase == _P.SUCCEEDED and old_phase != _P.SUCCEEDED and st.first_result == _P.DEGRADED:
        d.plan.run_recovered = True
        d.event("Normal", "Recovered", f"Run {st.run} succeeded after it was Degraded.")
    rows = conditions_for(st.phase, active, spec.suspend)
    set_conditions(st, rows, st.message or "", d.now, generation)


def _phase_events(d: Decision, old_phase: PipelinePhase | None, total: int) -> None:
    st = d.status
    if st.phase == _P.SUCCEEDED:
        steps = "its step" if total == 1 else f"all {total} steps"
        d.event("Normal", "Succeeded", f"Run {st.run}: {steps} succeeded.")
    elif st.phase == _P.DEGRADED:
        d.event("Warning", "Degraded", st.message or "")
    elif st.phase == _P.RUNNING and old_phase == _P.DEGRADED:
        # Not "Recovered" yet: the retried steps have not run (issue 19).
        d.event("Normal", "Resumed", "No failed step left: the run goes on.")


def fail_invalid(d: Decision, problems: Sequence[str], generation: int | None) -> None:
    """An invalid spec fails the run (until fixed) with the validation's message.

    Reads the problems; writes the run's phase, message, finish time, conditions and an
    InvalidSpec Event (once per message).
    """
    st = d.status
    message = validation.invalid_message("pipeline", problems)
    if st.phase != _P.FAILED or st.message != message:
        d.event("Warning", "InvalidSpec", message)
    st.phase = _P.FAILED
    st.message = message
    st.finished_at = st.finished_at or d.now
    for type_ in ("Succeeded", "Progressing"):
        st.conditions = set_condition(
            st.conditions, type_, "False", "InvalidSpec", message, d.now, generation
        )


# ---------------------------------------------------------------------- collect


def collect(d: Decision, spec: PipelineSpec, views: Sequence[JobView]) -> None:
    """Delete a finished run's Jobs ``ttlSecondsAfterFinished`` after it finished.

    Reads the run's phase and finish time, ``jobRetention`` and the Jobs; writes
    ``plan.delete`` or the wake-up time of the cleanup.
    """
    st = d.status
    ttl = spec.ttl_seconds_after_finished
    if st.phase not in (_P.SUCCEEDED, _P.FAILED) or ttl is None or st.finished_at is None:
        return
    when = st.finished_at + timedelta(seconds=ttl)
    if d.now < when:
        d.due_in(when)
        return
    for v in views:
        if v.deleting or v.state == "Active":
            continue
        if spec.job_retention == "All":
            continue
        if spec.job_retention == "Failed" and v.state == "Failed":
            continue
        d.plan.delete.append(v.name)


def is_terminal(d: Decision) -> bool:
    """The run is over until a rerun: it succeeded or timed out."""
    return d.status.phase == _P.SUCCEEDED or timed_out(d.status)
