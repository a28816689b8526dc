"""The first pure stage: what a reconcile derives from the spec and the Tasks alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from sluice.api import PipelineSpec
from sluice.core import cache_key, validation
from sluice.core.cache_key import CacheInputs
from sluice.core.dataflow import Flow
from sluice.core.jobspec import ResolvedStep, resolve_step
from sluice.core.matrix import DEFAULT_MAX_MATRIX
from sluice.core.params import MissingParamError
from sluice.core.schedule import Cron, ScheduleError, parse_cron

__all__ = ["Prepared", "prepare"]


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

    @property
    def flow(self) -> Flow | None:
        """The data flow (merged dependencies, references), when the spec parses."""
        return self.report.flow

    @cached_property
    def cron(self) -> Cron | None:
        """``spec.schedule`` parsed (once per spec), None without one or when it is invalid
        (validation reports why)."""
        spec = self.report.pipeline
        if spec is None or spec.schedule is None:
            return None
        try:
            return parse_cron(spec.schedule.cron, spec.schedule.time_zone)
        except ScheduleError:
            return None

    @cached_property
    def cache_inputs(self) -> dict[str, CacheInputs]:
        """The steps whose cache is enabled, with what the spec fixes of their keys."""
        spec = self.report.pipeline
        return {} if spec is None else cache_key.inputs(spec, self.report.tasks)

    @cached_property
    def declared(self) -> dict[str, tuple[str, ...]]:
        """The result names of each resolved step that declares results."""
        return {n: r.results for n, r in self.resolved.items() if r.results}

    @cached_property
    def matrixed(self) -> dict[str, ResolvedStep]:
        """The resolved steps that fan out (``matrix``)."""
        return {n: r for n, r in self.resolved.items() if r.matrix is not None}


def prepare(
    pipeline: Mapping[str, Any],
    tasks: Mapping[str, Mapping[str, Any]],
    *,
    max_matrix: int = DEFAULT_MAX_MATRIX,
) -> Prepared:
    """The spec checked (as the admission webhook checks it) and every step resolved;
    ``max_matrix``: the cap on a matrix's width (``sluice run --max-matrix``)."""
    name = (pipeline.get("metadata") or {}).get("name", "")
    report = validation.check_pipeline(
        pipeline.get("spec"), name=name, tasks=tasks, max_matrix=max_matrix
    )
    if report.pipeline is None:
        return Prepared(report, {}, [])
    resolved, step_problems = _resolve_steps(report.pipeline, report)
    return Prepared(report, resolved, step_problems)


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
    for step in [*spec.tasks, *spec.finally_]:
        if step.name in stopped:
            continue
        task_spec = step.task
        if task_spec is None and step.task_ref is not None:
            task_spec = report.tasks.get(step.task_ref.name)
        if task_spec is None:
            continue  # a problem of the pipeline as a whole (reported) stops it anyway
        try:
            resolved[step.name] = resolve_step(
                step, task_spec, pipeline_params, spec.pending_timeout_seconds
            )
        except MissingParamError as err:  # validation missed it: still say so, never stall
            problems.append((step.name, f'task "{step.name}": {err}'))
    return resolved, problems
