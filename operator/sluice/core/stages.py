"""The stages of one reconcile, in the order ``sluice.core.reconcile.decide`` runs them.

Each stage works on the :class:`~sluice.core.decision.Decision` ``d`` and says what it
reads and what it writes. ``d.status`` is the run's memory, the Jobs (``JobView``) are
the evidence; the plan (``d.plan``) collects what the shell is to do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta

from sluice.api import (
    RERUN_ANNOTATION,
    RETRY_ANNOTATION,
    FailureKind,
    PipelinePhase,
    PipelineSpec,
    TaskPhase,
)
from sluice.api.schedule import HISTORY_LIMIT_MAX, RunTrigger
from sluice.core import dag, fanout, settle, stuck, validation
from sluice.core.attempts import fold_jobs, reopen_fixed
from sluice.core.cache_key import ignores_cache
from sluice.core.conditions import (
    conditions_for,
    phase_and_message,
    set_condition,
    set_conditions,
    timed_out,
)
from sluice.core.decision import Decision
from sluice.core.gates import PipelineRef
from sluice.core.history import close_run
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
    "start_run",
    "stop_older_runs",
    "summarise",
    "time_out",
]

_T = T
_P = P
_WAITING = frozenset({_T.PENDING, _T.BLOCKED})
_ACTIVE = frozenset({_T.RUNNING, _T.RETRYING})


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
        start_run(d, newest_job_run, rerun, retry_token, RunTrigger.RECOVERED)
    elif st.run == 0 and spec_ok:
        start_run(d, 1, rerun, retry_token, RunTrigger.CREATED)
    elif st.run > 0 and rerun is not None and rerun != st.handled_rerun:
        start_run(d, st.run + 1, rerun, retry_token, RunTrigger.RERUN)
        d.event(
            "Normal", "RerunRequested", f"Run {st.run} started on request ({RERUN_ANNOTATION})."
        )


def start_run(
    d: Decision, run: int, rerun: str | None, retry_token: str | None, trigger: RunTrigger
) -> None:
    """Start run ``run`` (``trigger`` says why): a fresh status for it, the handled tokens
    set. A run replaced before it finished is closed in ``status.history`` as it stood."""
    st = d.status
    if st.run and st.history and st.phase is not None and st.finished_at is None:
        note = f"Replaced by run {run} before it finished."
        limit = HISTORY_LIMIT_MAX  # cut to spec.historyLimit when written (core.scheduling)
        st.history = close_run(
            st.history, run=st.run, phase=st.phase, finished_at=d.now, message=note, limit=limit
        )
    d.trigger = trigger
    st.ignore_cache = (trigger == RunTrigger.RERUN and ignores_cache(rerun)) or None
    st.run = run
    st.started_at = d.now
    st.finished_at = None
    st.first_result = None
    st.results = None
    st.phase = _P.PENDING
    st.handled_rerun = rerun
    st.handled_retry = retry_token
    st.finally_for = None
    d.steps = {}
    st.tasks = []
    if trigger != RunTrigger.RECOVERED:
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

    Reads ``status.startedAt``, ``status.finallyFor`` and the clock. Writes, on a timeout,
    every unfinished main step, the run's phase, message and Succeeded condition,
    ``plan.delete`` (the main steps' active Jobs) and an Event. Returns whether the run
    timed out now. Finally steps are exempt (``sluice.core.gates``): they run after a
    timeout, and once they started the run's deadline no longer applies.
    """
    st = d.status
    if not (spec.timeout_seconds and st.started_at) or st.finally_for is not None:
        return False
    deadline = st.started_at + timedelta(seconds=spec.timeout_seconds)
    if d.now < deadline:
        d.due_in(deadline)
        return False
    main = {t.name for t in spec.tasks}
    for v in run_jobs:
        if v.state == "Active" and not v.deleting and v.step in main:
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


# ---------------------------------------------------------------------- summarise


def summarise(
    d: Decision, spec: PipelineSpec, generation: int | None, outcome: settle.MainOutcome | None
) -> None:
    """The run's phase, progress, message, finish time, conditions and phase Events.

    Reads the steps' phases (main and finally), how the main steps settled (``outcome``)
    and ``spec.suspend``. Writes ``status`` (phase, progress, message, finishedAt,
    conditions), ``plan.run_finished`` and Events.
    """
    st = d.status
    steps = [(t.name, d.phase(t.name)) for t in spec.tasks]
    finals = [(t.name, d.phase(t.name)) for t in spec.finally_]
    phases = [p for _, p in steps]
    total = len(phases) + len(finals)
    st.progress = _progress(d, steps, finals)
    active = any(p in _ACTIVE for _, p in [*steps, *finals])
    old_phase = st.phase
    st.phase, st.message = phase_and_message(st, steps)
    finally_settled = _finally_phase(d, finals, phases, outcome)
    stuck_words = stuck.describe([d.step(t.name) for t in [*spec.tasks, *spec.finally_]])
    if stuck_words and st.phase == _P.RUNNING:
        st.message = f"{st.message} {stuck_words}"
    if spec.suspend and st.phase in (_P.PENDING, _P.RUNNING):
        st.message = "Suspended: no new tasks start. " + (st.message or "")

    finished = st.phase in (_P.SUCCEEDED, _P.FAILED) or (st.phase == _P.DEGRADED and not active)
    finished = finished and finally_settled
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


def _progress(
    d: Decision, steps: Sequence[tuple[str, TaskPhase]], finals: Sequence[tuple[str, TaskPhase]]
) -> str:
    """``done/total``: over steps, or over combinations when a step fans out."""
    if d.matrixed:
        return fanout.progress(d, [n for n, _ in [*steps, *finals]])
    return settle.progress([p for _, p in steps], [p for _, p in finals])


def _finally_phase(
    d: Decision,
    finals: Sequence[tuple[str, TaskPhase]],
    main: Sequence[TaskPhase],
    outcome: settle.MainOutcome | None,
) -> bool:
    """The finally steps' part in the run's phase and message (``settle.run_phase``);
    returns whether they have settled."""
    if not finals or outcome is None:
        return not finals or outcome is not None
    st = d.status
    phases = [p for _, p in finals]
    phase, settled = settle.run_phase([str(p) for p in main], [str(p) for p in phases], outcome)
    running = sum(1 for p in phases if p in _ACTIVE)
    if not settled and outcome != "Timeout":
        st.message = (st.message or "").rstrip(".") + f"; finally: {running} running."
    if outcome != "Succeeded":
        return settled
    st.phase = PipelinePhase(phase) if phase else st.phase
    failed = [n for n, p in finals if p == _T.FAILED]
    if phase == "Running":
        st.message = f"The main tasks succeeded; finally: {running} running."
    elif not failed:
        total = len(main) + len(phases)
        skipped = [*main, *phases].count(_T.SKIPPED)
        st.message = (
            f"{total - skipped} of {total} steps succeeded, {skipped} skipped."
            if skipped
            else f"All {total} steps succeeded."
        )
    else:
        st.message = (
            f"Finally task{'s' if len(failed) > 1 else ''} {', '.join(failed[:5])} failed past "
            f"the retry budget. Fix the task, or annotate {RETRY_ANNOTATION}=<new value> to retry."
        )
    return settled


def _phase_events(d: Decision, old_phase: PipelinePhase | None, total: int) -> None:
    st = d.status
    if st.phase == _P.SUCCEEDED:
        steps = "its step" if total == 1 else f"all {total} steps"
        text = f"{steps} succeeded." if "skipped" not in (st.message or "") else st.message
        d.event("Normal", "Succeeded", f"Run {st.run}: {text}")
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
