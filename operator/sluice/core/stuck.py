"""Steps stuck before their pod starts: named, and failed over to a retry.

A step whose attempt has been running for ``stuck_after`` seconds without its pod
running is looked at: the reconcile asks the shell for a diagnosis of that Job
(``Plan.diagnose``), and the shell passes what it read back in as ``pods=`` (the
Job's pods, ``core.pods.PodView``) and ``job_events=`` (the Job's Events, read here
by :func:`observe_event`). From them :func:`stuck_cause` names the cause: the
``main`` container's waiting reason (``ErrImagePull``, ``ImagePullBackOff``,
``CreateContainerConfigError``, ...), the scheduler's ``Unschedulable``, or the Job
controller's ``FailedCreate`` (a ResourceQuota that refuses the pod), each with
the kubelet's, scheduler's or Job controller's own message.

The cause goes in the step's ``reason``/``message`` (``stuckAt`` says since when),
and one ``StepStuck`` Event per cause. While stuck the step is looked at again every
:data:`REDIAGNOSE` seconds (the plan's wake-up, no polling loop); the reason clears
as soon as the pod runs. ``pendingTimeoutSeconds`` fails a stuck attempt (kind
PodFailure, the stuck reason) and deletes its Job; a stuck step whose definition
changed (a corrected Task) restarts at once with a fresh budget.

A step whose pod started, or that finishes before ``stuck_after``, costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta

from sluice.api import FailureKind, PipelineSpec, TaskStatus
from sluice.core.attempts import fail_attempt
from sluice.core.decision import Decision
from sluice.core.jobevents import JobEvent, observe_event
from sluice.core.jobspec import ResolvedStep
from sluice.core.observe import JobView
from sluice.core.phases import T
from sluice.core.pods import PodView

__all__ = [
    "REDIAGNOSE",
    "STUCK_AFTER",
    "JobEvent",
    "describe",
    "observe_event",
    "stuck_cause",
    "wake_for",
    "watch",
]

STUCK_AFTER = 30.0
"""Default seconds an attempt may run without its pod running before it is looked at."""

REDIAGNOSE = 10.0
"""Seconds between two looks at an attempt found stuck."""

STARTED = ("Started", "")
"""What :func:`stuck_cause` says of a Job whose pod got going."""

_MESSAGE_MAX = 400


def _pod_cause(pod: PodView) -> tuple[str, str]:
    if pod.unschedulable is not None:
        return "Unschedulable", pod.unschedulable
    if pod.waiting_reason:
        return pod.waiting_reason, pod.waiting_message or ""
    return "PodPending", f"pod {pod.name} has not started"


def stuck_cause(pods: Sequence[PodView], events: Sequence[JobEvent]) -> tuple[str, str]:
    """Why a Job's pod is not running: (reason, message), or :data:`STARTED`."""
    live = [p for p in pods if not p.deleting]
    if any(p.started or p.phase in ("Running", "Succeeded", "Failed") for p in live):
        return STARTED
    if live:
        # The newest pod says most about what happens now.
        pod = max(live, key=lambda p: (p.created_at is not None, p.created_at or 0, p.name))
        return _pod_cause(pod)
    refused = [e for e in events if e.reason == "FailedCreate"]
    if refused:
        latest = max(refused, key=lambda e: (e.last_seen is not None, e.last_seen or 0))
        return "FailedCreate", latest.message
    if pods:  # only pods on their way out
        return "PodPending", "the Job's pod is being deleted and no new one runs yet"
    return "NoPod", "the Job has not created a pod yet"


def watch(
    d: Decision,
    spec: PipelineSpec,
    resolved: Mapping[str, ResolvedStep],
    run_jobs: Sequence[JobView],
    stuck_after: float,
) -> None:
    """Name the cause of running steps whose pod has not started; fail or restart them.

    Reads the running steps, their current attempt's Job, ``d.pods``, ``d.job_events``
    and the resolved steps (spec hash, pendingTimeoutSeconds). Writes those steps'
    reason, message and stuckAt, StepStuck Events, ``plan.diagnose``, ``plan.delete``
    (an attempt past its pendingTimeoutSeconds, or stuck with an outdated definition)
    and the wake-up time.
    """
    current = {(v.step, v.attempt): v for v in run_jobs}
    for step in [*spec.tasks, *spec.finally_]:
        ts = d.step(step.name)
        if ts.phase != T.RUNNING or ts.matrix is not None:
            continue  # a matrixed step's combinations are not watched (yet)
        job = current.get((ts.name, ts.attempts))
        if job is None or job.state != "Active" or job.deleting:
            continue
        _watch_step(d, ts, job, resolved.get(ts.name), stuck_after)


def wake_for(d: Decision, stuck_after: float) -> None:
    """Attempts started now are looked at once past the threshold, if still running.

    (This very reconcile creates their Jobs; the next ones may well be skipped as
    unchanged, so the wake-up is asked for here.)"""
    if d.plan.create:
        d.due_in(d.now + timedelta(seconds=stuck_after))


def _watch_step(
    d: Decision, ts: TaskStatus, job: JobView, res: ResolvedStep | None, stuck_after: float
) -> None:
    pods = d.pods.get(job.name)
    if pods is not None:
        cause = stuck_cause(pods, d.job_events.get(job.name, ()))
        if cause == STARTED:
            if ts.stuck_at is not None:
                ts.stuck_at = None
                ts.reason = ts.message = None
            return
    if ts.stuck_at is not None and res is not None and res.spec_hash != ts.spec_hash:
        _restart(d, ts, job)
        return
    started = job.created_at or ts.started_at
    if started is None:
        return
    threshold = started + timedelta(seconds=stuck_after)
    if d.now < threshold:
        d.due_in(threshold)
        return
    d.plan.diagnose.append(job.name)
    d.due_in(d.now + timedelta(seconds=REDIAGNOSE))
    if pods is None:
        return  # nothing read yet: the shell reads and reconciles again
    reason, message = cause[0], cause[1][:_MESSAGE_MAX]
    _mark(d, ts, reason, message)
    limit = res.pending_timeout_seconds if res is not None else None
    if limit is None:
        return
    deadline = started + timedelta(seconds=limit)
    if d.now < deadline:
        d.due_in(deadline)
        return
    d.plan.delete.append(job.name)
    detail = f"pod not started after {limit}s (pendingTimeoutSeconds): {message}"
    fail_attempt(d, ts, reason, detail, FailureKind.POD_FAILURE, d.now)


def _mark(d: Decision, ts: TaskStatus, reason: str, message: str) -> None:
    """Record the cause; one StepStuck Event per cause (not per look)."""
    if ts.stuck_at is None or ts.reason != reason:
        d.event(
            "Warning",
            "StepStuck",
            f'Task "{ts.name}" attempt {ts.attempts}: pod not running: {reason}'
            + (f": {message}" if message else ""),
        )
    ts.stuck_at = ts.stuck_at or d.now
    ts.reason, ts.message = reason, message


def _restart(d: Decision, ts: TaskStatus, job: JobView) -> None:
    """A stuck step whose definition changed: its attempt is replaced at once."""
    d.plan.delete.append(job.name)
    ts.retry_base = ts.attempts
    ts.finished_at = None
    ts.next_retry_at = None
    ts.reason = "DefinitionChanged"
    ts.message = f'task "{ts.name}" changed while stuck: restarting with a fresh budget'
    d.move(ts, T.PENDING)
    d.event("Normal", "DefinitionChanged", ts.message[0].upper() + ts.message[1:] + ".")


def describe(steps: Sequence[TaskStatus]) -> str | None:
    """The stuck steps, for the pipeline's message: None when none is stuck."""
    stuck = [ts for ts in steps if ts.phase == T.RUNNING and ts.stuck_at is not None]
    if not stuck:
        return None
    first = stuck[0]
    words = f"{first.name} ({first.reason}" + (f": {first.message[:160]}" if first.message else "")
    more = f"; {len(stuck) - 1} more" if len(stuck) > 1 else ""
    return f"Not started: {words}){more}."
