"""The stages of a reconcile that start steps: ``when`` gates, finally steps, new attempts.

Part of the reconcile's stages (``sluice.core.stages`` has the others; same conventions:
each stage works on the Decision ``d`` and says what it reads and writes). The decisions
themselves are ``sluice.core.settle``'s; the values a ``when`` or a reference sees are
``sluice.core.dataflow``'s, gathered from the status (``status.tasks[].results``, phases).

Finally steps and the run's timeout
    ``timeoutSeconds`` of the pipeline bounds the *main* steps. When it strikes, the main
    steps stop (as without finally steps) and the finally steps then run with
    ``$(tasks.status)`` = ``Timeout``: they are exempt from the run's timeout and keep
    their own step timeouts. Once the finally steps have started for an outcome, the run's
    deadline no longer applies (nothing but finally steps is left to bound).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sluice.api import TaskStatus
from sluice.core import caching, dataflow, fanout, settle, when
from sluice.core.dataflow import Flow
from sluice.core.decision import Decision
from sluice.core.jobspec import ResolvedStep, build_job
from sluice.core.matrix import EMPTY_MATRIX
from sluice.core.matrix_status import Demand, admit
from sluice.core.phases import T
from sluice.core.references import MissingValueError, Ref

__all__ = ["FlowContext", "PipelineRef", "main_outcome", "rearm_finally", "schedule"]

_T = T


class PipelineRef:
    """Who the Jobs belong to: the Pipeline's name, namespace and uid."""

    __slots__ = ("name", "namespace", "uid")

    def __init__(self, name: str, namespace: str, uid: str) -> None:
        self.name, self.namespace, self.uid = name, namespace, uid


@dataclass
class FlowContext:
    """What the gates need of the spec: the data flow, the params, the step names."""

    flow: Flow
    params: Mapping[str, str]
    main: Sequence[str]
    finally_: Sequence[str] = ()
    stop_all: bool = False
    outcome: settle.MainOutcome | None = None
    """How the main steps settled (None while they have not): ``$(tasks.status)``."""
    statuses: dict[str, str] = field(default_factory=dict)
    """``$(tasks.STEP.status)`` of the main steps, once they settled."""


def main_outcome(d: Decision, ctx: FlowContext, *, timed_out: bool) -> settle.MainOutcome | None:
    """How the main steps settled (``settle.main_outcome``); kept on ``ctx`` with the main
    steps' statuses. Reads the main steps' phases."""
    phases = {n: str(d.phase(n)) for n in ctx.main}
    ctx.outcome = settle.main_outcome(
        list(phases.values()), timed_out=timed_out, stop_all=ctx.stop_all
    )
    ctx.statuses = settle.step_statuses(phases) if ctx.outcome is not None else {}
    return ctx.outcome


def rearm_finally(d: Decision, ctx: FlowContext) -> None:
    """Finally steps that ran for another outcome than the main steps' now are reset to
    Pending with a fresh budget (their next attempts are new Jobs); a finally attempt
    still running is stopped. Reads and writes ``status.finallyFor`` and the finally
    steps' statuses."""
    st = d.status
    if not settle.rearm_finally(_outcome_of(st.finally_for), ctx.outcome):
        return
    for name in ctx.finally_:
        ts = d.step(name)
        if ts.phase in (_T.RUNNING, _T.RETRYING) and ts.job:
            d.plan.delete.append(ts.job)
        if ts.phase != _T.PENDING or ts.attempts:
            ts.retry_base = ts.attempts
            ts.finished_at = ts.next_retry_at = None
            ts.results = None
            ts.reason, ts.message = "Rearmed", "the main tasks settled again: runs again"
            d.move(ts, _T.PENDING)
    st.finally_for = None


def _outcome_of(value: str | None) -> settle.MainOutcome | None:
    for outcome in ("Succeeded", "Degraded", "Timeout"):
        if value == outcome:
            return outcome
    return None


def schedule(
    d: Decision,
    names: Sequence[str],
    deps: Mapping[str, Sequence[str]],
    resolved: Mapping[str, ResolvedStep],
    owner: PipelineRef,
    ctx: FlowContext,
    slots: float,
) -> float:
    """Start due retries, then the combinations of matrixed steps under way, then the steps
    the gates let run, within ``slots``; returns the slots left. Skips (``WhenFalse``,
    ``UpstreamSkipped``, ``EmptyMatrix``) and ``WhenError``/``InvalidMatrix`` failures are
    decided on the way.

    Reads the steps' phases, results and retry times, the dependencies, the data flow and
    the resolved steps. Writes ``plan.create`` (one Job per attempt started), the steps'
    statuses, Events and the wake-up time of the next retry.
    """
    due = []
    for name in names:
        ts = d.step(name)
        if name in d.fanout:
            if ts.phase in (_T.RUNNING, _T.FAILED) and d.fanout[name].candidates():
                due.append(name)
        elif ts.phase == _T.RETRYING and ts.next_retry_at is not None:
            if ts.next_retry_at <= d.now:
                due.append(name)
            else:
                d.due_in(ts.next_retry_at)
    for name in [*due, *_gate(d, names, deps, ctx)]:
        if slots <= 0:
            break
        res = resolved.get(name)
        if res is None:
            continue
        if res.matrix is not None:
            slots -= _start_combinations(d, d.step(name), res, owner, ctx, slots)
        elif caching.restore(d, d.step(name), ctx.flow.refs.get(name, ())):
            continue  # done from the cache (no Job)
        elif _start_attempt(d, d.step(name), res, owner, ctx):
            slots -= 1
    return slots


def _gate(
    d: Decision, names: Sequence[str], deps: Mapping[str, Sequence[str]], ctx: FlowContext
) -> list[str]:
    """Pending steps whose dependencies are done: skipped, failed, or ready (returned)."""
    phases = {n: str(ts.phase) for n, ts in d.steps.items()}
    results = fanout.when_results(d)

    def condition(step: str, now: Mapping[str, str]) -> when.WhenFalse | when.WhenError | bool:
        compiled = ctx.flow.whens.get(step)
        if compiled is None:
            return True
        values = dataflow.when_values(
            compiled,
            params=ctx.params,
            phases=now,
            results=results,
            run_status=ctx.outcome,
            statuses=ctx.statuses,
        )
        return when.decide(compiled, values)

    kind = {n: list(deps.get(n, ())) for n in names}
    decisions = settle.gate(
        kind, phases, result_producers=ctx.flow.result_producers, condition=condition
    )
    for name, decision in decisions.items():
        ts = d.step(name)
        if decision.action == "skip":
            ts.reason, ts.message = decision.reason, decision.message
            ts.finished_at = d.now
            d.move(ts, _T.SKIPPED)
            d.event("Normal", "TaskSkipped", f'Task "{name}" skipped: {decision.message}.')
        elif decision.action == "fail":
            _fail(d, ts, decision.reason or when.WHEN_ERROR, decision.message or "")
    return [n for n in names if n in decisions and decisions[n].action == "run"]


def _fail(d: Decision, ts: TaskStatus, reason: str, message: str) -> None:
    ts.reason, ts.message = reason, message
    ts.finished_at = d.now
    ts.next_retry_at = None
    d.move(ts, _T.FAILED)
    d.event("Warning", "TaskFailed", f'Task "{ts.name}" failed: {reason}: {message}.')


def _start_attempt(
    d: Decision, ts: TaskStatus, res: ResolvedStep, owner: PipelineRef, ctx: FlowContext
) -> bool:
    # The one place a plain step is about to get a new attempt's Job.
    values = _text_values(d, ts, ctx)
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
    except MissingValueError as err:
        _fail(d, ts, "UnresolvedReference", str(err))
        return False
    ts.attempts += 1
    ts.results = None  # a new attempt starts without an older attempt's results
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
    return True


def _text_values(d: Decision, ts: TaskStatus, ctx: FlowContext) -> dict[Ref, str]:
    """The values of the references the step's Job uses (not its ``when``'s)."""
    refs = [r for where, r in ctx.flow.refs.get(ts.name, ()) if where != "when"]
    return dataflow.text_values(
        refs,
        results={n: s.results or {} for n, s in d.steps.items()},
        run_status=ctx.outcome,
        statuses=ctx.statuses,
    )


def _start_combinations(
    d: Decision,
    ts: TaskStatus,
    res: ResolvedStep,
    owner: PipelineRef,
    ctx: FlowContext,
    slots: float,
) -> int:
    """Start what ``matrix_status.admit`` lets of a matrixed step's combinations (due
    retries, then pending ones by index); returns how many started."""
    state = fanout.begin(d, ts, res)
    if isinstance(state, str):
        if state == EMPTY_MATRIX:
            ts.reason, ts.message = EMPTY_MATRIX, "its matrix has no combinations"
            ts.finished_at = d.now
            d.move(ts, _T.SKIPPED)
            d.event("Normal", "TaskSkipped", f'Task "{ts.name}" skipped: {ts.message}.')
        else:
            reason, _, message = state.partition(": ")
            _fail(d, ts, reason, message)
        return 0
    assert res.matrix is not None
    demand = Demand(ts.name, state.candidates(), state.running(), res.matrix.max_parallel)
    limit = None if math.isinf(slots) else int(slots)
    chosen = admit([demand], running=0, max_parallel=limit).get(ts.name, [])
    if not chosen:
        return 0
    try:
        values = _text_values(d, ts, ctx)
        for index in chosen:
            c = state.combos[index]
            manifest = build_job(
                pipeline=owner.name,
                namespace=owner.namespace,
                pipeline_uid=owner.uid,
                step=res,
                run=d.status.run,
                attempt=c.attempts + 1,
                retry_base=state.bases[index],
                values=values,
                combination=state.combo(index),
            )
            d.plan.create.append(manifest)
            fanout.started(state, index, manifest["metadata"]["name"])
            ts.job = manifest["metadata"]["name"]
    except MissingValueError as err:
        _fail(d, ts, "UnresolvedReference", str(err))
        return 0
    ts.spec_hash = res.spec_hash
    ts.started_at = ts.started_at or d.now
    fanout.write(d, ts, state)
    return len(chosen)


def free_slots(d: Decision, max_parallel: int | None) -> float:
    """How many more Jobs may run now (``maxParallel`` over main and finally steps, each
    running combination of a matrixed step counting as one)."""
    if max_parallel is None:
        return math.inf
    if d.fanout:
        return max_parallel - fanout.running(d)
    running = sum(1 for ts in d.steps.values() if ts.phase == _T.RUNNING)
    return max_parallel - running
