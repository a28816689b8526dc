"""The heart of Sluice: from what exists to what to do.

``reconcile(pipeline, tasks, jobs, now)`` takes the Pipeline object, the Task
objects it may refer to and the Jobs it owns (plain dicts, as the API server
returns them) and returns a :class:`Plan`: Jobs to create and delete, the new
status, Events, and when to look again. It does no I/O and reads no clock, so
every decision is testable in microseconds and a restarted operator that
calls it with the same inputs makes the same decisions.

Memory and evidence
    ``status`` is the memory of a run (it survives TTL deletion of Jobs);
    Jobs are the evidence that moves it forward. A Job the status does not
    know yet (the operator died between creating it and writing status) is
    adopted from its labels and annotations, so nothing is lost and, because
    a Job's name is derived from (pipeline, task, run, attempt), no attempt is
    ever started twice.

Documented rules
    * A Job of a running attempt that disappears (deleted by someone else)
      counts as a failed attempt of kind ``PodFailure`` (reason ``JobDeleted``)
      and goes through the retry policy like any other failure.
    * A Task (or inline task) changed under a running pipeline: the attempt
      already running keeps its definition; every later attempt uses the new
      one. A *failed* task whose definition changed is retried at once with a
      fresh retry budget: that is how a Degraded pipeline recovers by itself.
    * A referenced Task that is missing, a cycle, an unknown ``dependsOn`` or
      an unset parameter fails the pipeline (phase ``Failed``, reason
      ``InvalidSpec``) with a message naming the problem; nothing new starts,
      running Jobs finish, and the pipeline resumes when the problem is fixed.
      The checks and their wording are ``sluice.core.validation``'s, shared with the
      admission webhook: the operator's message is the one the webhook refuses with.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError

from sluice.api import (
    RERUN_ANNOTATION,
    RETRY_ANNOTATION,
    Condition,
    PipelineSpec,
    PipelineStatus,
    RetryPolicy,
    TaskStatus,
    dump,
    parse_pipeline_status,
    parse_rfc3339,
)
from sluice.core import dag, naming, retry, validation
from sluice.core.jobspec import ANNOTATION_RETRY_BASE, ResolvedStep, build_job, resolve_step
from sluice.core.params import MissingParamError

__all__ = [
    "Event",
    "JobView",
    "Plan",
    "Prepared",
    "TaskTransition",
    "observe_job",
    "prepare",
    "reconcile",
]

JobState = Literal["Active", "Succeeded", "Failed"]


@dataclass(frozen=True)
class JobView:
    """What the reconciler needs to know of one Job it owns."""

    name: str
    task: str
    run: int
    attempt: int
    retry_base: int
    spec_hash: str | None
    state: JobState
    reason: str | None
    message: str | None
    created_at: datetime | None
    finished_at: datetime | None
    deleting: bool


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class TaskTransition:
    """A task's phase change, for metrics: the shell counts and times these."""

    task: str
    old: str
    new: str
    attempt: int
    failure_kind: str | None = None
    duration_s: float | None = None


@dataclass
class Plan:
    create: list[dict[str, Any]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    status: dict[str, Any] | None = None
    """A merge patch to the status subresource when it changed, else None."""
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    """Seconds until something is due (a backoff, a timeout, a TTL), if anything."""
    transitions: list[TaskTransition] = field(default_factory=list)
    run_finished: str | None = None
    """The result ("Succeeded", "Failed", "Degraded") when the run reached it now."""


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    return parse_rfc3339(str(value))


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def observe_job(job: Mapping[str, Any]) -> JobView | None:
    """Read a Job dict into a JobView; None when it is not one of ours."""
    meta = job.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    task = annotations.get(naming.ANNOTATION_TASK)
    if not task or naming.LABEL_RUN not in labels:
        return None
    status = job.get("status") or {}
    state: JobState = "Active"
    reason = message = None
    finished = None
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            state = "Succeeded"
            finished = _parse_time(status.get("completionTime") or cond.get("lastTransitionTime"))
        elif cond.get("type") == "Failed":
            state = "Failed"
            reason, message = cond.get("reason"), cond.get("message")
            finished = _parse_time(cond.get("lastTransitionTime"))
    return JobView(
        name=meta.get("name", ""),
        task=task,
        run=_int(labels.get(naming.LABEL_RUN)),
        attempt=_int(labels.get(naming.LABEL_ATTEMPT)),
        retry_base=_int(annotations.get(ANNOTATION_RETRY_BASE)),
        spec_hash=annotations.get(naming.ANNOTATION_SPEC_HASH),
        state=state,
        reason=reason,
        message=message,
        created_at=_parse_time(meta.get("creationTimestamp")),
        finished_at=finished,
        deleting=bool(meta.get("deletionTimestamp")),
    )


def _resolve_steps(
    spec: PipelineSpec, report: validation.Report
) -> tuple[dict[str, ResolvedStep], list[tuple[str, str]]]:
    """Resolve every step (Task, params): the results, and (step, problem) pairs in order.

    The problems are the validation's step findings; a step they leave unresolvable
    is simply not resolved.
    """
    pipeline_params = {p.name: p.value for p in spec.params}
    problems = [(f.step, f.message) for f in report.errors if f.step is not None]
    stopped = {step for step, _ in problems}
    resolved: dict[str, ResolvedStep] = {}
    for step in spec.tasks:
        if step.name in stopped:
            continue
        task_spec = step.task
        if task_spec is None and step.task_ref is not None:
            task_spec = report.tasks.get(step.task_ref.name)
        if task_spec is None:
            continue  # a problem of the pipeline as a whole (reported) stops it anyway
        try:
            resolved[step.name] = resolve_step(step, task_spec, pipeline_params)
        except MissingParamError as err:  # validation missed it: still say so, never stall
            problems.append((step.name, f'task "{step.name}": {err}'))
    return resolved, problems


def _set_condition(
    conditions: list[Condition],
    type_: str,
    status: Literal["True", "False", "Unknown"],
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    old = next((c for c in conditions if c.type == type_), None)
    changed_status = old is None or old.status != status
    cond = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=now if changed_status or old is None else old.last_transition_time,
        observed_generation=generation,
    )
    return [c for c in conditions if c.type != type_] + [cond]


class _Run:
    """Mutable working state of one reconcile: the status being built and the plan."""

    def __init__(self, status: PipelineStatus, now: datetime) -> None:
        self.st = status
        self.now = now
        self.plan = Plan()
        self.by_name: dict[str, TaskStatus] = {t.name: t for t in status.tasks}
        self.retry_policies: dict[str, RetryPolicy] = {}

    def task(self, name: str) -> TaskStatus:
        ts = self.by_name.get(name)
        if ts is None:
            ts = TaskStatus(name=name)
            self.by_name[name] = ts
        return ts

    def move(self, ts: TaskStatus, new: str, failure_kind: str | None = None) -> None:
        old = ts.phase
        if old == new:
            return
        duration = None
        if new in ("Succeeded", "Failed", "Retrying") and ts.started_at and ts.finished_at:
            duration = (ts.finished_at - ts.started_at).total_seconds()
        ts.phase = new  # type: ignore[assignment]
        self.plan.transitions.append(
            TaskTransition(ts.name, old, new, ts.attempts, failure_kind, duration)
        )

    def event(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.plan.events.append(Event(type_, reason, message))

    def due_in(self, when: datetime | None) -> None:
        if when is None:
            return
        seconds = max((when - self.now).total_seconds(), 0.0)
        rq = self.plan.requeue_after
        self.plan.requeue_after = seconds if rq is None else min(rq, seconds)


@dataclass(frozen=True)
class Prepared:
    """What reconcile derives from the spec and the Tasks alone: no status, no Jobs,
    no clock. A caller may keep it while neither changes (the shell keys it by the
    Pipeline's uid and generation and its namespace's Task events) and pass it back
    in: parsing, validating and resolving every step is most of a reconcile's cost.
    """

    report: validation.Report
    resolved: dict[str, ResolvedStep]
    step_problems: list[tuple[str, str]]


def prepare(pipeline: Mapping[str, Any], tasks: Mapping[str, Mapping[str, Any]]) -> Prepared:
    """The spec checked (as the admission webhook checks it) and every step resolved."""
    name = (pipeline.get("metadata") or {}).get("name", "")
    report = validation.check_pipeline(pipeline.get("spec"), name=name, tasks=tasks)
    if report.pipeline is None:
        return Prepared(report, {}, [])
    resolved, step_problems = _resolve_steps(report.pipeline, report)
    return Prepared(report, resolved, step_problems)


def reconcile(
    pipeline: Mapping[str, Any],
    tasks: Mapping[str, Mapping[str, Any]],
    jobs: Iterable[JobView | Mapping[str, Any]],
    now: datetime,
    prepared: Prepared | None = None,
) -> Plan:
    """Decide what to do for one Pipeline. Pure: same inputs, same plan.

    ``jobs`` are the pipeline's Jobs, raw or already observed (``observe_job``).

    ``prepared`` must be ``prepare(pipeline, tasks)`` for these very spec and
    Tasks (computed here when not given).
    """
    meta = pipeline.get("metadata") or {}
    name: str = meta.get("name", "")
    namespace: str = meta.get("namespace", "")
    uid: str = meta.get("uid", "")
    generation: int | None = meta.get("generation")
    annotations: Mapping[str, str] = meta.get("annotations") or {}
    raw_status = pipeline.get("status")
    try:
        old_status = parse_pipeline_status(raw_status)
    except ValidationError:
        old_status = PipelineStatus()  # a status we cannot read is rebuilt from the Jobs
    # Freshly parsed objects (no part shared with the input): worked on in place.
    r = _Run(old_status, now)
    st = r.st
    views = [
        v
        for v in (j if isinstance(j, JobView) else observe_job(j) for j in jobs)
        if v is not None
    ]

    # --- the spec itself -------------------------------------------------------
    # The same checks as the admission webhook's, so a pipeline that got past it (webhook
    # down or off) fails with the very message the webhook would have refused it with.
    prep = prepared if prepared is not None else prepare(pipeline, tasks)
    report = prep.report
    spec: PipelineSpec | None = report.pipeline
    # Problems of the pipeline as a whole stop it at once; those of one step (its Task,
    # its params) only while that step still has to run.
    problems = [f.message for f in report.errors if f.step is None]
    deps: dict[str, list[str]] = {}
    if spec is not None:
        deps = {t.name: list(t.depends_on) for t in spec.tasks}

    # --- which run ---------------------------------------------------------------
    rerun = annotations.get(RERUN_ANNOTATION)
    newest_job_run = max((v.run for v in views), default=0)
    if newest_job_run > st.run:
        # We started a run and died before recording it: adopt it.
        _start_run(r, newest_job_run, rerun, annotations.get(RETRY_ANNOTATION), adopted=True)
    elif st.run == 0 and not problems:
        _start_run(r, 1, rerun, annotations.get(RETRY_ANNOTATION))
    elif st.run > 0 and rerun is not None and rerun != st.handled_rerun:
        _start_run(r, st.run + 1, rerun, annotations.get(RETRY_ANNOTATION))
        r.event(
            "Normal", "RerunRequested", f"Run {st.run} started on request ({RERUN_ANNOTATION})."
        )
    run_jobs = [v for v in views if v.run == st.run]
    # Active Jobs of older runs are stopped: a rerun replaces the run before it.
    for v in views:
        if v.run < st.run and v.state == "Active" and not v.deleting:
            r.plan.delete.append(v.name)

    step_names = [t.name for t in spec.tasks] if spec is not None else []
    # Steps removed from the spec drop out of the status.
    if spec is not None:
        r.by_name = {n: r.task(n) for n in step_names}

    # --- fold the evidence (Jobs) into the memory (status) -------------------------
    resolved: dict[str, ResolvedStep] = {}
    if spec is not None:
        resolved, step_problems = prep.resolved, prep.step_problems
        r.retry_policies = {n: res.retry for n, res in resolved.items()}
        by_task: dict[str, list[JobView]] = {}
        for v in run_jobs:
            by_task.setdefault(v.task, []).append(v)
        for step_name in step_names:
            _fold_jobs(r, r.task(step_name), by_task.get(step_name, []))
        # A problem only matters for a step that still has to run.
        problems.extend(p for n, p in step_problems if r.task(n).phase != "Succeeded")

    terminal = st.phase == "Succeeded" or (
        st.phase == "Failed" and _condition_reason(st, "Succeeded") == "Timeout"
    )

    if spec is None or problems:
        _fail_invalid(r, problems, generation)
        return _finish(r, old_status, raw_status, generation)

    # --- failures: retry budget, recovery ---------------------------------------------
    retry_token = annotations.get(RETRY_ANNOTATION)
    retry_requested = retry_token is not None and retry_token != st.handled_retry
    if not terminal:
        for step in spec.tasks:
            ts = r.task(step.name)
            res = resolved.get(step.name)
            if ts.phase != "Failed" or res is None:
                continue
            if retry_requested:
                _reopen(r, ts, "RetryRequested", f'task "{ts.name}" retried on request')
            elif ts.spec_hash is not None and res.spec_hash != ts.spec_hash:
                _reopen(
                    r,
                    ts,
                    "DefinitionChanged",
                    f'task "{ts.name}" changed since it failed: retrying with a fresh budget',
                )
    if retry_token is not None:
        st.handled_retry = retry_token

    failed = {n for n in step_names if r.task(n).phase == "Failed"}
    blocked = dag.dependents(deps, failed)
    for n in step_names:
        ts = r.task(n)
        if n in blocked and ts.phase in ("Pending", "Blocked"):
            if ts.phase != "Blocked":
                ts.reason, ts.message = "UpstreamFailed", "an upstream task failed"
            r.move(ts, "Blocked")
        elif ts.phase == "Blocked" and n not in blocked:
            ts.reason = ts.message = None
            r.move(ts, "Pending")

    # --- pipeline timeout --------------------------------------------------------------
    if not terminal and spec.timeout_seconds and st.started_at:
        deadline = st.started_at + timedelta(seconds=spec.timeout_seconds)
        if now >= deadline:
            _time_out(r, spec, run_jobs)
            terminal = True
        else:
            r.due_in(deadline)

    # --- start what is ready ---------------------------------------------------------
    stop_all = spec.failure_policy == "StopAll" and bool(failed)
    if not terminal and not spec.suspend and not stop_all:
        _schedule(r, spec, deps, resolved, name, namespace, uid)

    # --- TTL of a finished run ---------------------------------------------------------
    _phase_and_conditions(r, spec, generation, failed)
    if st.phase in ("Succeeded", "Failed") and spec.ttl_seconds_after_finished is not None:
        _collect(r, spec, views)
    return _finish(r, old_status, raw_status, generation)


# ---------------------------------------------------------------------------- steps


def _condition_reason(st: PipelineStatus, type_: str) -> str | None:
    return next((c.reason for c in st.conditions if c.type == type_), None)


def _start_run(
    r: _Run, run: int, rerun: str | None, retry_token: str | None, adopted: bool = False
) -> None:
    st = r.st
    st.run = run
    st.started_at = r.now
    st.finished_at = None
    st.phase = "Pending"
    st.handled_rerun = rerun
    st.handled_retry = retry_token
    r.by_name = {}
    st.tasks = []
    if not adopted:
        r.event("Normal", "RunStarted", f"Run {run} started.")


def _fold_jobs(r: _Run, ts: TaskStatus, jobs: list[JobView]) -> None:
    """Bring one task's status up to date with its Jobs of the current run."""
    latest = max(jobs, key=lambda v: v.attempt, default=None)
    if latest is not None and latest.attempt > ts.attempts:
        # A Job we created but never recorded (crash between create and status).
        ts.attempts = latest.attempt
        ts.job = latest.name
        ts.spec_hash = latest.spec_hash
        ts.retry_base = latest.retry_base
        ts.started_at = ts.started_at or latest.created_at or r.now
        ts.finished_at = None
        ts.next_retry_at = None
        ts.reason = ts.message = None
        r.move(ts, "Running")
    if ts.phase != "Running":
        return
    current = next((v for v in jobs if v.attempt == ts.attempts), None)
    if current is None:
        # Recorded as running, but its Job is gone: someone deleted it.
        _attempt_failed(
            r, ts, "JobDeleted", f"Job {ts.job} was deleted while running", retry.POD_FAILURE, r.now
        )
        return
    if current.state == "Succeeded":
        ts.finished_at = current.finished_at or r.now
        ts.reason, ts.message = "Completed", None
        ts.next_retry_at = None
        r.move(ts, "Succeeded")
    elif current.state == "Failed":
        kind = retry.classify_job_failure(current.reason, current.message)
        _attempt_failed(
            r,
            ts,
            current.reason or "Failed",
            current.message or "",
            kind,
            current.finished_at or r.now,
        )


def _attempt_failed(
    r: _Run, ts: TaskStatus, reason: str, message: str, kind: str, when: datetime
) -> None:
    ts.reason, ts.message = reason, message
    ts.finished_at = when
    # A step whose Task has gone missing keeps the default policy.
    policy = r.retry_policies.get(ts.name) or RetryPolicy()
    limit = policy.limit
    used = ts.attempts - ts.retry_base
    retryable = retry.is_retryable(kind, [str(k) for k in policy.retry_on])
    if retryable and used <= limit:
        b = policy.backoff
        delay = retry.backoff_seconds(b.initial_seconds, b.factor, b.max_seconds, used)
        ts.next_retry_at = when + timedelta(seconds=math.ceil(delay))
        r.move(ts, "Retrying", kind)
        r.event(
            "Warning",
            "TaskRetrying",
            f'Task "{ts.name}" attempt {ts.attempts} failed ({reason}'
            f"{': ' + message if message else ''}); retry {used} of {limit} in {delay:.0f}s.",
        )
    else:
        ts.next_retry_at = None
        r.move(ts, "Failed", kind)
        why = "not retryable" if not retryable else f"{used} attempt(s), retry limit {limit}"
        r.event(
            "Warning",
            "TaskFailed",
            f'Task "{ts.name}" failed: {reason}{": " + message if message else ""} ({why}).',
        )


def _reopen(r: _Run, ts: TaskStatus, reason: str, message: str) -> None:
    ts.retry_base = ts.attempts
    ts.finished_at = None
    ts.next_retry_at = None
    ts.reason, ts.message = reason, message
    r.move(ts, "Pending")
    r.event("Normal", reason, message[0].upper() + message[1:] + ".")


def _time_out(r: _Run, spec: PipelineSpec, run_jobs: list[JobView]) -> None:
    st = r.st
    for v in run_jobs:
        if v.state == "Active" and not v.deleting:
            r.plan.delete.append(v.name)
    for t in spec.tasks:
        ts = r.task(t.name)
        if ts.phase in ("Running", "Retrying"):
            ts.finished_at = r.now
            ts.reason, ts.message = "PipelineTimeout", "the pipeline ran out of time"
            ts.next_retry_at = None
            r.move(ts, "Failed", retry.DEADLINE_EXCEEDED)
        elif ts.phase in ("Pending", "Blocked"):
            ts.reason, ts.message = "PipelineTimeout", "not started before the pipeline timed out"
            r.move(ts, "Skipped")
    st.phase = "Failed"
    st.finished_at = r.now
    st.message = f"The pipeline timed out after {spec.timeout_seconds}s."
    r.st.conditions = _set_condition(
        st.conditions, "Succeeded", "False", "Timeout", st.message, r.now, None
    )
    r.event("Warning", "Timeout", st.message)


def _schedule(
    r: _Run,
    spec: PipelineSpec,
    deps: Mapping[str, list[str]],
    resolved: Mapping[str, ResolvedStep],
    name: str,
    namespace: str,
    uid: str,
) -> None:
    running = sum(1 for t in spec.tasks if r.task(t.name).phase == "Running")
    slots = math.inf if spec.max_parallel is None else spec.max_parallel - running
    succeeded = {t.name for t in spec.tasks if r.task(t.name).phase == "Succeeded"}
    due_retries, ready = [], []
    for step in spec.tasks:
        ts = r.task(step.name)
        if ts.phase == "Retrying" and ts.next_retry_at is not None:
            if ts.next_retry_at <= r.now:
                due_retries.append(step.name)
            else:
                r.due_in(ts.next_retry_at)
        elif ts.phase == "Pending" and all(d in succeeded for d in deps[step.name]):
            ready.append(step.name)
    for step_name in due_retries + ready:
        if slots <= 0:
            break
        res = resolved.get(step_name)
        if res is None:
            continue
        ts = r.task(step_name)
        ts.attempts += 1
        manifest = build_job(
            pipeline=name,
            namespace=namespace,
            pipeline_uid=uid,
            step=res,
            run=r.st.run,
            attempt=ts.attempts,
            retry_base=ts.retry_base,
        )
        r.plan.create.append(manifest)
        ts.job = manifest["metadata"]["name"]
        ts.spec_hash = res.spec_hash
        if ts.started_at is None or (ts.phase == "Pending" and ts.attempts == ts.retry_base + 1):
            ts.started_at = r.now
        ts.finished_at = None
        ts.next_retry_at = None
        if ts.phase == "Pending":
            ts.reason = ts.message = None
        r.move(ts, "Running")
        slots -= 1


def _phase_and_conditions(
    r: _Run, spec: PipelineSpec, generation: int | None, failed: set[str]
) -> None:
    st = r.st
    phases = [r.task(t.name).phase for t in spec.tasks]
    total = len(phases)
    done = phases.count("Succeeded")
    st.progress = f"{done}/{total}"
    failed_now = [t.name for t in spec.tasks if r.task(t.name).phase == "Failed"]
    active = any(p in ("Running", "Retrying") for p in phases)
    old_phase = st.phase

    if st.phase == "Failed" and _condition_reason(st, "Succeeded") == "Timeout":
        pass  # terminal until a rerun
    elif done == total:
        st.phase = "Succeeded"
        st.message = f"All {total} tasks succeeded."
    elif failed_now:
        st.phase = "Degraded"
        names = ", ".join(failed_now[:5]) + (" ..." if len(failed_now) > 5 else "")
        n_blocked = phases.count("Blocked")
        st.message = (
            f"Task{'s' if len(failed_now) > 1 else ''} {names} failed past the retry budget"
            + (f"; {n_blocked} blocked" if n_blocked else "")
            + ("; other tasks still running" if active else "")
            + f". Fix the task, or annotate {RETRY_ANNOTATION}=<new value> to retry."
        )
    elif active:
        st.phase = "Running"
        running = phases.count("Running")
        retrying = phases.count("Retrying")
        st.message = f"{running} running" + (f", {retrying} waiting to retry" if retrying else "")
        st.message += f", {done} of {total} done."
    elif any(p == "Pending" for p in phases) and st.phase in (None, "Pending", "Failed"):
        st.phase = "Pending"
        st.message = "Waiting to start."
    if spec.suspend and st.phase in ("Pending", "Running"):
        st.message = "Suspended: no new tasks start. " + (st.message or "")

    finished = st.phase == "Succeeded" or (st.phase == "Degraded" and not active)
    if st.phase == "Failed":
        finished = True
    if finished and st.finished_at is None:
        st.finished_at = r.now
    elif not finished:
        st.finished_at = None

    if st.phase != old_phase:
        if st.phase == "Succeeded":
            r.plan.run_finished = "Succeeded"
            r.event("Normal", "Succeeded", f"Run {st.run}: all {total} tasks succeeded.")
        elif st.phase == "Degraded":
            r.plan.run_finished = "Degraded"
            r.event("Warning", "Degraded", st.message or "")
        elif st.phase == "Running" and old_phase == "Degraded":
            r.event("Normal", "Recovered", "No failed task left: the pipeline is running again.")

    g = generation
    msg = st.message or ""
    if st.phase == "Succeeded":
        st.conditions = _set_condition(
            st.conditions, "Succeeded", "True", "Succeeded", msg, r.now, g
        )
        st.conditions = _set_condition(
            st.conditions, "Progressing", "False", "Finished", msg, r.now, g
        )
        st.conditions = _set_condition(
            st.conditions, "Degraded", "False", "Succeeded", "", r.now, g
        )
    elif st.phase == "Degraded":
        st.conditions = _set_condition(
            st.conditions, "Succeeded", "False", "TaskFailed", msg, r.now, g
        )
        st.conditions = _set_condition(
            st.conditions,
            "Progressing",
            "True" if active else "False",
            "TasksRunning" if active else "WaitingForFix",
            msg,
            r.now,
            g,
        )
        st.conditions = _set_condition(
            st.conditions, "Degraded", "True", "TaskFailed", msg, r.now, g
        )
    elif st.phase == "Failed":
        st.conditions = _set_condition(
            st.conditions, "Progressing", "False", "Failed", msg, r.now, g
        )
        st.conditions = _set_condition(st.conditions, "Degraded", "False", "Failed", "", r.now, g)
    else:
        st.conditions = _set_condition(
            st.conditions, "Succeeded", "Unknown", "Running", msg, r.now, g
        )
        st.conditions = _set_condition(
            st.conditions,
            "Progressing",
            "False" if spec.suspend else "True",
            "Suspended" if spec.suspend else "TasksRunning",
            msg,
            r.now,
            g,
        )
        st.conditions = _set_condition(
            st.conditions, "Degraded", "False", "NoFailure", "", r.now, g
        )


def _collect(r: _Run, spec: PipelineSpec, views: list[JobView]) -> None:
    st = r.st
    assert spec.ttl_seconds_after_finished is not None
    if st.finished_at is None:
        return
    when = st.finished_at + timedelta(seconds=spec.ttl_seconds_after_finished)
    if r.now < when:
        r.due_in(when)
        return
    for v in views:
        if v.deleting or v.state == "Active":
            continue
        if spec.job_retention == "All":
            continue
        if spec.job_retention == "Failed" and v.state == "Failed":
            continue
        r.plan.delete.append(v.name)


def _fail_invalid(r: _Run, problems: list[str], generation: int | None) -> None:
    st = r.st
    message = validation.invalid_message("pipeline", problems)
    if st.phase != "Failed" or st.message != message:
        r.event("Warning", "InvalidSpec", message)
    st.phase = "Failed"
    st.message = message
    st.finished_at = st.finished_at or r.now
    st.conditions = _set_condition(
        st.conditions, "Succeeded", "False", "InvalidSpec", message, r.now, generation
    )
    st.conditions = _set_condition(
        st.conditions, "Progressing", "False", "InvalidSpec", message, r.now, generation
    )


def _finish(r: _Run, old: PipelineStatus, raw_status: Any, generation: int | None) -> Plan:
    st = r.st
    st.tasks = list(r.by_name.values())
    st.observed_generation = generation
    new = dump(st)
    if new != (raw_status or {}):
        # A JSON merge patch: top-level fields that went away are sent as null
        # (lists such as tasks and conditions are replaced whole by a merge patch).
        patch: dict[str, Any] = dict.fromkeys(raw_status or {})
        patch.update(new)
        r.plan.status = patch
    # Never delete the same Job twice in one plan.
    r.plan.delete = list(dict.fromkeys(r.plan.delete))
    return r.plan
