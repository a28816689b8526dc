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
    * A step's pod that has ``Succeeded`` (in ``pods``) is its attempt's success
      at once, before the Job controller's batched ``Complete``; failures come
      only from the Job's conditions. Should the Job end otherwise afterwards
      (its deadline passing at the same moment), the recorded success stands; a
      pod gone from ``pods`` says nothing (``sluice.core.podsuccess``).
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

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from sluice.api import (
    RERUN_ANNOTATION,
    RETRY_ANNOTATION,
    PipelineSpec,
    PipelineStatus,
    dump,
    parse_pipeline_status,
)
from sluice.core import gates, harvest, podsuccess, scheduling, stages, stuck
from sluice.core.conditions import timed_out
from sluice.core.dataflow import Flow
from sluice.core.decision import Decision
from sluice.core.jobevents import JobEvent
from sluice.core.matrix import DEFAULT_MAX_MATRIX
from sluice.core.observe import JobView, observe_job
from sluice.core.phases import P, T
from sluice.core.plan import Event, Plan, TaskTransition
from sluice.core.pods import PodView
from sluice.core.prepare import Prepared, prepare

__all__ = [
    "Event",
    "JobView",
    "Plan",
    "Prepared",
    "TaskTransition",
    "decide",
    "observe_job",
    "prepare",
    "reconcile",
]


def reconcile(
    pipeline: Mapping[str, Any],
    tasks: Mapping[str, Mapping[str, Any]],
    jobs: Iterable[JobView | Mapping[str, Any]],
    now: datetime,
    prepared: Prepared | None = None,
    *,
    pods: Mapping[str, Sequence[PodView]] | None = None,
    job_events: Mapping[str, Sequence[JobEvent]] | None = None,
    stuck_after: float = stuck.STUCK_AFTER,
    max_matrix: int = DEFAULT_MAX_MATRIX,
) -> Plan:
    """Decide what to do for one Pipeline. Pure: same inputs, same plan.

    ``jobs`` are the pipeline's Jobs, raw or already observed (``observe_job``).

    ``prepared`` must be ``prepare(pipeline, tasks)`` for these very spec and
    Tasks (computed here when not given): reconcile is the two pure stages
    :func:`prepare` and :func:`decide`. ``pods`` are what the shell knows of the pods of
    those Jobs, by Job name (``core.pods.PodView``; a Job absent from it: nothing known);
    ``job_events`` the Events of the Jobs it diagnosed, and ``stuck_after`` the seconds
    after which a running attempt whose pod has not started is looked at (``core.stuck``);
    ``max_matrix`` the cap on a matrix's width (``sluice run --max-matrix``).
    """
    if prepared is None:
        prepared = prepare(pipeline, tasks, max_matrix=max_matrix)
    return decide(
        prepared,
        pipeline,
        jobs,
        now,
        pods=pods,
        job_events=job_events,
        stuck_after=stuck_after,
        max_matrix=max_matrix,
    )


def decide(
    prepared: Prepared,
    pipeline: Mapping[str, Any],
    jobs: Iterable[JobView | Mapping[str, Any]],
    now: datetime,
    *,
    pods: Mapping[str, Sequence[PodView]] | None = None,
    job_events: Mapping[str, Sequence[JobEvent]] | None = None,
    stuck_after: float = stuck.STUCK_AFTER,
    max_matrix: int = DEFAULT_MAX_MATRIX,
) -> Plan:
    """The second stage: from the prepared spec, the Pipeline's metadata and status and
    its Jobs, the plan. Reads ``pipeline``'s metadata and status only (its spec is in
    ``prepared``)."""
    meta = pipeline.get("metadata") or {}
    generation: int | None = meta.get("generation")
    annotations: Mapping[str, str] = meta.get("annotations") or {}
    raw_status = pipeline.get("status")
    try:
        old_status = parse_pipeline_status(raw_status)
    except ValidationError:
        old_status = PipelineStatus()  # a status we cannot read is rebuilt from the Jobs
    # Freshly parsed objects (no part shared with the input): worked on in place.
    d = Decision(old_status, now, pods, job_events)
    views = [
        v for v in (j if isinstance(j, JobView) else observe_job(j) for j in jobs) if v is not None
    ]

    # The same checks as the admission webhook's, so a pipeline that got past it (webhook
    # down or off) fails with the very message the webhook would have refused it with.
    # Problems of the pipeline as a whole stop it at once; those of one step (its Task,
    # its params) only while that step still has to run.
    spec = prepared.report.pipeline
    problems = [f.message for f in prepared.report.errors if f.step is None]
    retry_token = annotations.get(RETRY_ANNOTATION)

    stages.choose_run(d, views, annotations.get(RERUN_ANNOTATION), retry_token, not problems)
    scheduling.tick(d, prepared, meta, views)  # a due tick starts run N+1, as a rerun does
    run_jobs = podsuccess.promote([v for v in views if v.run == d.status.run], d.pods)
    stages.stop_older_runs(d, views)
    if spec is None:
        stages.fail_invalid(d, problems, generation)
        return _finish(d, raw_status, generation)

    main_names = [t.name for t in spec.tasks]
    finally_names = [t.name for t in spec.finally_]
    step_names = [*main_names, *finally_names]
    d.steps = {n: d.step(n) for n in step_names}  # steps removed from the spec drop out
    d.retry_policies = {n: res.retry for n, res in prepared.resolved.items()}
    d.declared = prepared.declared
    d.matrixed = prepared.matrixed
    d.max_matrix = max_matrix
    stages.fold_jobs(d, step_names, run_jobs)
    problems += _step_problems(d, prepared)
    if problems:
        stages.fail_invalid(d, problems, generation)
        return _finish(d, raw_status, generation)

    ctx = _flow_context(spec, prepared)
    main_deps, finally_deps = ctx.flow.main_deps, ctx.flow.finally_deps
    terminal = stages.is_terminal(d)
    stages.reopen_fixed(d, spec, prepared.resolved, retry_token, terminal)
    if not terminal:
        stuck.watch(d, spec, prepared.resolved, run_jobs, stuck_after)
    failed = stages.block_dependents(d, main_names, main_deps)
    stages.block_dependents(d, finally_names, finally_deps)
    terminal = terminal or stages.time_out(d, spec, run_jobs)
    slots = gates.free_slots(d, spec.max_parallel)
    owner = _owner(meta)
    if _may_start(spec, terminal, failed):
        slots = gates.schedule(d, main_names, main_deps, prepared.resolved, owner, ctx, slots)
        stages.block_dependents(d, main_names, main_deps)  # a `when` that failed now
    outcome = gates.main_outcome(d, ctx, timed_out=timed_out(d.status))
    gates.rearm_finally(d, ctx)
    if outcome is not None and finally_names and not spec.suspend:
        d.status.finally_for = outcome
        gates.schedule(d, finally_names, finally_deps, prepared.resolved, owner, ctx, slots)
        stages.block_dependents(d, finally_names, finally_deps)
    stuck.wake_for(d, stuck_after)
    stages.summarise(d, spec, generation, outcome)
    _pipeline_results(d, spec)
    stages.collect(d, spec, views)
    return _finish(d, raw_status, generation)


def _flow_context(spec: PipelineSpec, prepared: Prepared) -> gates.FlowContext:
    """The data flow validation analysed (a plain graph when it has none)."""
    flow = prepared.report.flow
    if flow is None:
        flow = Flow(
            main_deps={t.name: list(t.depends_on) for t in spec.tasks},
            finally_deps={t.name: list(t.depends_on) for t in spec.finally_},
        )
    return gates.FlowContext(
        flow=flow,
        params={p.name: p.value for p in spec.params},
        main=[t.name for t in spec.tasks],
        finally_=[t.name for t in spec.finally_],
        stop_all=spec.failure_policy == "StopAll",
    )


def _pipeline_results(d: Decision, spec: PipelineSpec) -> None:
    """``spec.results`` resolved into ``status.results``, once the run has succeeded."""
    if spec.results and d.status.phase == P.SUCCEEDED and d.status.results is None:
        recorded = {n: s.results for n, s in d.steps.items() if s.results}
        d.status.results = harvest.pipeline_results(spec.results, recorded)


def _step_problems(d: Decision, prepared: Prepared) -> list[str]:
    """A step's problem only matters while the step still has to run."""
    return [p for n, p in prepared.step_problems if d.phase(n) not in (T.SUCCEEDED, T.SKIPPED)]


def _may_start(spec: PipelineSpec, terminal: bool, failed: set[str]) -> bool:
    """New attempts start unless the run is over, suspended, or stopped by a failure."""
    stop_all = spec.failure_policy == "StopAll" and bool(failed)
    return not terminal and not spec.suspend and not stop_all


def _owner(meta: Mapping[str, Any]) -> gates.PipelineRef:
    return gates.PipelineRef(meta.get("name", ""), meta.get("namespace", ""), meta.get("uid", ""))


def _finish(d: Decision, raw_status: Any, generation: int | None) -> Plan:
    """Write the steps back into the status and the status into the plan, as a patch."""
    st = d.status
    st.tasks = list(d.steps.values())
    st.observed_generation = generation
    scheduling.write_history(d)
    new = dump(st)
    if new != (raw_status or {}):
        # A JSON merge patch: top-level fields that went away are sent as null
        # (lists such as tasks and conditions are replaced whole by a merge patch).
        patch: dict[str, Any] = dict.fromkeys(raw_status or {})
        patch.update(new)
        d.plan.status = patch
    # Never delete the same Job twice in one plan.
    d.plan.delete = list(dict.fromkeys(d.plan.delete))
    return d.plan
