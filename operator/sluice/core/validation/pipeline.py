"""Checks of a Pipeline's spec: its graph, its steps, their Tasks and params, its size."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from pydantic import ValidationError

from sluice.api import PipelineSpec, PipelineTask, TaskSpec, parse_pipeline_spec
from sluice.core import dag, naming, params
from sluice.core.matrix import DEFAULT_MAX_MATRIX
from sluice.core.validation.cache_scope import check_cache_scope
from sluice.core.validation.flow import check_flow
from sluice.core.validation.matrix import check_matrices, matrix_param_names
from sluice.core.validation.report import (
    MAX_OBJECT_BYTES,
    STATUS_BYTES_PER_TASK,
    Report,
    did_you_mean,
    pydantic_problems,
    quote,
    twice,
)
from sluice.core.validation.schedule import check_schedule
from sluice.core.validation.task import check_task, task_problems

__all__ = ["check_pipeline"]

_STATUS_BASE_BYTES: Final = 4096
"""The rest of the status (conditions with their messages, phase, times)."""


def check_pipeline(
    spec: Any,
    *,
    name: str | None = None,
    tasks: Mapping[str, Mapping[str, Any]] | None = None,
    size: int | None = None,
    max_matrix: int = DEFAULT_MAX_MATRIX,
) -> Report:
    """Check a Pipeline's ``spec``.

    ``name`` is the Pipeline's name (for the Job names), ``tasks`` the Task
    objects of its namespace by name (``{"spec": ...}`` dicts; None when they
    are not known, which skips the checks that need them), ``size`` the
    object's JSON size when known, ``max_matrix`` the cap on a matrix's width
    (``sluice run --max-matrix``).
    """
    report = Report("pipeline")
    if not isinstance(spec, Mapping):
        report.add("error", "invalid spec: spec must be an object with a list of tasks")
        return report
    try:
        pipeline = parse_pipeline_spec(spec)
    except ValidationError as err:
        for problem in pydantic_problems(err, "spec"):
            report.add("error", f"invalid spec: {problem}")
        return report
    report.pipeline = pipeline
    _check_graph(report, pipeline)
    check_schedule(report, pipeline)
    check_cache_scope(report, pipeline)
    if name is not None:
        _check_jobnames_list(report, pipeline, name)
    _check_steps(report, pipeline, tasks)
    check_flow(report, pipeline, tasks)
    report.findings += check_matrices(pipeline, report.tasks, cap=max_matrix)
    if size is not None:
        _check_size(report, pipeline, size)
    return report


def _check_graph(report: Report, spec: PipelineSpec) -> None:
    names = [t.name for t in [*spec.tasks, *spec.finally_]]
    finally_names = {t.name for t in spec.finally_}
    main_names = {t.name for t in spec.tasks}
    seen: set[str] = set()
    for n in names:
        if n in seen:
            both = n in main_names and n in finally_names
            report.add(
                "error",
                f"task name {quote(n)} is used twice"
                + (" (in tasks and in finally: names are unique across both)" if both else ""),
            )
        seen.add(n)
    # dependsOn between main and finally steps: the data-flow checks' rules and words.
    for steps, known in (
        (spec.tasks, main_names),
        (spec.finally_, finally_names),
    ):
        deps = {step.name: _check_depends_on(report, step, known, seen) for step in steps}
        cycle = dag.find_cycle(deps)
        if cycle is not None:
            report.add("error", f"cycle: {dag.format_cycle(cycle)}")


def _check_depends_on(
    report: Report, step: PipelineTask, known: set[str], every: set[str]
) -> list[str]:
    """The step's dependsOn problems; returns its edges among steps of its kind."""
    listed: set[str] = set()
    for dep in step.depends_on:
        if dep == step.name:
            report.add("error", f"step {quote(step.name)} cannot depend on itself")
        elif dep in listed:
            report.add("error", f"task {quote(step.name)} lists {quote(dep)} twice in dependsOn")
        elif dep not in every:
            report.add(
                "error",
                f"task {quote(step.name)} depends on unknown task {quote(dep)}"
                + did_you_mean(dep, every - {step.name}),
            )
        listed.add(dep)
    return [d for d in step.depends_on if d != step.name and d in known]


def _check_jobnames_list(report: Report, spec: PipelineSpec, pipeline: str) -> None:
    # naming.job_name shortens long names with a hash, so only names Kubernetes would not
    # accept can fail; the longest step is the one to try.
    longest = max((t.name for t in [*spec.tasks, *spec.finally_]), key=len)
    try:
        naming.job_name(pipeline, longest, 1, 1)
    except ValueError as err:
        report.add(
            "error",
            f"pipeline {quote(pipeline)} and task {quote(longest)} cannot form a valid Job "
            f"name ({err})",
        )


def _check_steps(
    report: Report, spec: PipelineSpec, tasks: Mapping[str, Mapping[str, Any]] | None
) -> None:
    for name in twice(p.name for p in spec.params):
        report.add("error", f"pipeline parameter {quote(name)} is declared twice")
    pipeline_params = {p.name: p.value for p in spec.params}
    checked: dict[str, Report] = {}
    used_params: set[str] = set()
    all_known = True
    for step in [*spec.tasks, *spec.finally_]:
        used_params |= _check_step_values(report, spec, step, pipeline_params)
        used_params |= _when_params(step.when)
        task = _step_task(report, step, tasks, checked)
        if task is None:
            all_known = False
            continue
        _check_values(report, step, task, pipeline_params, external=step.task is None)
        used_params |= {p.name for p in task.params}
    if all_known:
        for name in pipeline_params.keys() - used_params:
            report.add(
                "warning",
                f"pipeline parameter {quote(name)} is not used: no task declares it",
            )


_WHEN_PARAM: Final = re.compile(r"\bparams\.([A-Za-z_][A-Za-z0-9_]*)|\$\(params\.([^)]+)\)")


def _when_params(expression: str | None) -> set[str]:
    """The params a ``when`` seems to use (for the "not used" warning only)."""
    return {a or b for a, b in _WHEN_PARAM.findall(expression or "")}


def _check_step_values(
    report: Report, spec: PipelineSpec, step: PipelineTask, pipeline_params: Mapping[str, str]
) -> set[str]:
    """The step's own params and timeout; returns the pipeline params its values use."""
    where = f"task {quote(step.name)}"
    used: set[str] = set()
    for dup in twice(p.name for p in step.params):
        report.add("error", f"{where} sets parameter {quote(dup)} twice", step=step.name)
    # Step values may refer to pipeline params; nothing else is substituted into them.
    for p in step.params:
        refs = params.referenced_params(p.value)
        used |= refs
        for ref in sorted(refs - pipeline_params.keys()):
            report.add(
                "error",
                f"{where}: parameter {quote(p.name)} uses $(params.{ref}), which the pipeline "
                "does not declare" + did_you_mean(ref, pipeline_params),
                step=step.name,
            )
    max_timeout = spec.timeout_seconds
    if max_timeout and step.timeout_seconds and step.timeout_seconds > max_timeout:
        report.add(
            "warning",
            f"{where}: timeoutSeconds ({step.timeout_seconds}) is longer than the "
            f"pipeline's ({max_timeout})",
            step=step.name,
        )
    return used


def _step_task(
    report: Report,
    step: PipelineTask,
    tasks: Mapping[str, Mapping[str, Any]] | None,
    checked: dict[str, Report],
) -> TaskSpec | None:
    """The step's task definition, checked: inline, or its Task when that exists and is
    valid (kept in ``report.tasks``); None when it is not known."""
    where = f"task {quote(step.name)}"
    if step.task is not None:
        for severity, message in task_problems(step.task):
            report.add(severity, f"{where}: {message}", step=step.name)
        return step.task
    assert step.task_ref is not None
    if tasks is None:
        return None
    ref = step.task_ref.name
    obj = tasks.get(ref)
    if obj is None:
        report.add(
            "error",
            f"{where} refers to Task {quote(ref)}, which does not exist" + did_you_mean(ref, tasks),
            step=step.name,
            external=True,
        )
        return None
    if ref not in checked:
        checked[ref] = check_task(obj.get("spec") if isinstance(obj, Mapping) else None)
    task_report = checked[ref]
    if task_report.errors or task_report.task is None:
        report.add(
            "error",
            f"{where} uses Task {quote(ref)}, which is invalid: "
            + "; ".join(f.message for f in task_report.errors[:3]),
            step=step.name,
            external=True,
        )
        return None
    report.tasks[ref] = task_report.task
    return task_report.task


def _check_values(
    report: Report,
    step: PipelineTask,
    task: TaskSpec,
    pipeline_params: Mapping[str, str],
    *,
    external: bool,
) -> None:
    """Does every parameter the task declares get a value, and are the step's values used?"""
    declared = [(p.name, p.default) for p in task.params]
    values = {p.name: p.value for p in step.params}
    where = f"task {quote(step.name)}"
    # As params.resolve sees it (step values referring to undeclared pipeline params
    # have their own message, from the caller).
    fanned = matrix_param_names(step)  # each combination gives these a value
    missing = [
        n
        for n, default in declared
        if n not in values and n not in pipeline_params and default is None and n not in fanned
    ]
    if missing:
        err = params.MissingParamError(missing)
        report.add("error", f"{where}: {err}", step=step.name, external=external)
    for extra in params.undeclared((n for n, _ in declared), values):
        report.add(
            "warning",
            f"{where} sets parameter {quote(extra)}, which its task does not declare: it is "
            "ignored" + did_you_mean(extra, (n for n, _ in declared)),
            step=step.name,
            external=external,
        )


def _check_size(report: Report, spec: PipelineSpec, size: int) -> None:
    steps = len(spec.tasks) + len(spec.finally_)
    status = _STATUS_BASE_BYTES + STATUS_BYTES_PER_TASK * steps
    if size + status > MAX_OBJECT_BYTES:
        report.add(
            "error",
            f"the pipeline is too big: {size // 1024} KiB, plus about {status // 1024} KiB of "
            f"status for its {steps} tasks, is over the {MAX_OBJECT_BYTES // 1024} "
            "KiB the API server stores; move large values into ConfigMaps or Tasks, or split "
            "the pipeline",
        )
