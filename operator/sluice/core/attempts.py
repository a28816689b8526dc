"""The stages of a reconcile that read the attempts: fold in the Jobs, reopen fixed steps.

Part of ``sluice.core.stages`` (which re-exports them); the same conventions hold: each
stage works on the Decision ``d`` and says what it reads and writes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from sluice.api import FailureKind, PipelineSpec, RetryPolicy, TaskStatus
from sluice.core import caching, fanout, harvest, retry
from sluice.core.decision import Decision
from sluice.core.jobspec import ResolvedStep
from sluice.core.observe import JobView
from sluice.core.phases import T

__all__ = ["fail_attempt", "fold_jobs", "reopen_fixed"]

_T = T
_READ_AGAIN_SECONDS = 5


# ---------------------------------------------------------------------- fold in the Jobs


def fold_jobs(d: Decision, step_names: Sequence[str], run_jobs: Sequence[JobView]) -> None:
    """Bring every step's status up to date with its Jobs of the current run.

    Reads the Jobs of the run and the retry policies; writes the steps' statuses,
    Retrying/Failed Events and the transitions.
    """
    by_step: dict[str, list[JobView]] = {}
    for v in run_jobs:
        by_step.setdefault(v.step, []).append(v)
    for name in step_names:
        res = d.matrixed.get(name)
        if res is not None:
            fanout.fold(d, d.step(name), res, by_step.get(name, []))
        else:
            _fold_step(d, d.step(name), by_step.get(name, []))


def _fold_step(d: Decision, ts: TaskStatus, jobs: list[JobView]) -> None:
    latest = max(jobs, key=lambda v: v.attempt, default=None)
    if latest is not None and latest.attempt > ts.attempts:
        # A Job we created but never recorded (crash between create and status).
        ts.attempts = latest.attempt
        ts.job = latest.name
        ts.spec_hash = latest.spec_hash
        ts.retry_base = latest.retry_base
        ts.started_at = ts.started_at or latest.created_at or d.now
        ts.finished_at = None
        ts.next_retry_at = None
        ts.reason = ts.message = None
        ts.results = None
        d.move(ts, _T.RUNNING)
    if ts.phase != _T.RUNNING:
        return
    current = next((v for v in jobs if v.attempt == ts.attempts), None)
    if current is None:
        # Recorded as running, but its Job is gone: someone deleted it.
        message = f"Job {ts.job} was deleted while running"
        fail_attempt(d, ts, "JobDeleted", message, FailureKind.POD_FAILURE, d.now)
    elif current.state == "Succeeded":
        declared = d.declared.get(ts.name)
        if declared and not _record_results(d, ts, current, declared):
            return
        ts.finished_at = current.finished_at or d.now
        ts.reason, ts.message = "Completed", None
        ts.next_retry_at = None
        d.move(ts, _T.SUCCEEDED, attempt_started=current.created_at)
        caching.remember(d, ts)
    elif current.state == "Failed":
        kind = retry.classify_job_failure(current.reason, current.message)
        reason, message = retry.failure_words(current.reason, current.message, kind)
        when = current.finished_at or d.now
        fail_attempt(d, ts, reason, message, kind, when, current.created_at)


def _record_results(d: Decision, ts: TaskStatus, job: JobView, declared: Sequence[str]) -> bool:
    """Record the results of the succeeded attempt ``job``: whether the step succeeds now
    (False: its pods are not read yet, or the attempt failed for its results)."""
    if ts.results:
        return True
    used = harvest.used_bytes([*(s.results for s in d.steps.values()), d.status.results])
    found = harvest.harvest(job.name, d.pods.get(job.name), declared, step=ts.name, used=used)
    if found is None:
        # Its pods are not known yet (the shell reads them; a read that failed is tried
        # again by this wake-up).
        d.due_in(d.now + timedelta(seconds=_READ_AGAIN_SECONDS))
        return False
    if isinstance(found, harvest.Unreadable):
        when = job.finished_at or d.now
        kind, final = found.kind, found.final
        fail_attempt(d, ts, found.reason, found.message, kind, when, job.created_at, final=final)
        return False
    ts.results = found
    return True


def fail_attempt(
    d: Decision,
    ts: TaskStatus,
    reason: str,
    message: str,
    kind: FailureKind,
    when: datetime,
    attempt_started: datetime | None = None,
    *,
    final: bool = False,
) -> None:
    ts.reason, ts.message = reason, message
    ts.finished_at = when
    # A step whose Task has gone missing keeps the default policy.
    policy = d.retry_policies.get(ts.name) or RetryPolicy()
    limit = policy.limit
    used = ts.attempts - ts.retry_base
    retryable = retry.may_retry(kind, reason, policy, final=final)
    detail = f": {message}" if message else ""
    if retryable and used <= limit:
        delay = retry.policy_delay(policy, used)
        ts.next_retry_at = when + timedelta(seconds=math.ceil(delay))
        d.move(ts, _T.RETRYING, kind, attempt_started)
        d.event(
            "Warning",
            "TaskRetrying",
            f'Task "{ts.name}" attempt {ts.attempts} failed ({reason}{detail}); '
            f"retry {used} of {limit} in {delay:.0f}s.",
        )
    else:
        ts.next_retry_at = None
        d.move(ts, _T.FAILED, kind, attempt_started)
        # attempts counts every attempt of the run (those before a fix too), as the
        # status does; the limit bounds the retries since the last fix.
        why = "not retryable" if not retryable else f"attempt {ts.attempts}, retry limit {limit}"
        d.event("Warning", "TaskFailed", f'Task "{ts.name}" failed: {reason}{detail} ({why}).')


# ---------------------------------------------------------------------- reopen fixed steps


def reopen_fixed(
    d: Decision,
    spec: PipelineSpec,
    resolved: Mapping[str, ResolvedStep],
    retry_token: str | None,
    terminal: bool,
) -> None:
    """Failed steps get a fresh budget on a retry request or when their definition changed.

    Reads the retry annotation, ``handledRetry``, the steps' spec hashes and the resolved
    steps. Writes the reopened steps (Pending), Events and ``handledRetry``.
    """
    st = d.status
    retry_requested = retry_token is not None and retry_token != st.handled_retry
    if not terminal:
        for step in [*spec.tasks, *spec.finally_]:
            ts = d.step(step.name)
            res = resolved.get(step.name)
            if ts.phase != _T.FAILED or res is None:
                continue
            reopen = fanout.reopen if step.name in d.fanout else _reopen
            if retry_requested:
                reopen(d, ts, "RetryRequested", f'task "{ts.name}" retried on request')
            elif ts.spec_hash is not None and res.spec_hash != ts.spec_hash:
                message = f'task "{ts.name}" changed since it failed: retrying with a fresh budget'
                reopen(d, ts, "DefinitionChanged", message)
    if retry_token is not None:
        st.handled_retry = retry_token


def _reopen(d: Decision, ts: TaskStatus, reason: str, message: str) -> None:
    ts.retry_base = ts.attempts
    ts.finished_at = None
    ts.results = None
    ts.next_retry_at = None
    ts.reason, ts.message = reason, message
    d.move(ts, _T.PENDING)
    d.event("Normal", reason, message[0].upper() + message[1:] + ".")
