"""Checks of a Pipeline's data flow: references between steps, ``when`` conditions and the
pipeline's results (``sluice.core.dataflow`` does the analysis; this turns its problems
into findings and keeps the :class:`~sluice.core.dataflow.Flow` for the reconciler).

The one place validation calls ``dataflow.analyse``: checks of ``when`` and ``finally``
add to :func:`check_flow`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sluice.api import PipelineSpec, PipelineTask, TaskSpec
from sluice.core import dataflow, references
from sluice.core.validation.matrix import matrix_texts
from sluice.core.validation.report import Report, did_you_mean, quote

__all__ = ["check_flow", "step_task"]

_TASKS = "$(tasks."


def step_task(
    step: PipelineTask, report: Report, tasks: Mapping[str, Mapping[str, Any]] | None
) -> TaskSpec | None:
    """The step's task definition as validation found it (None: not known yet)."""
    if step.task is not None:
        return step.task
    if step.task_ref is None or tasks is None:
        return None
    return report.tasks.get(step.task_ref.name)


def _step_flow(
    step: PipelineTask, report: Report, tasks: Mapping[str, Mapping[str, Any]] | None
) -> dataflow.StepFlow:
    task = step_task(step, report, tasks)
    texts = list(
        references.iter_texts(
            task.command if task else None,
            task.args if task else None,
            task.env if task else None,
            params=[(p.name, p.value) for p in step.params],
        )
    )
    # A fromResult producer is a dependency, with the data-flow checks of any reference.
    texts += matrix_texts(step)
    return dataflow.StepFlow(
        name=step.name,
        depends_on=list(step.depends_on),
        texts=texts,
        when=step.when,
        results=[r.name for r in task.results] if task is not None else None,
        external=step.task is None,
        matrixed=step.matrix is not None,
    )


def check_flow(
    report: Report, spec: PipelineSpec, tasks: Mapping[str, Mapping[str, Any]] | None
) -> None:
    """Analyse the data flow (kept in ``report.flow``) and report its problems."""
    main = [_step_flow(s, report, tasks) for s in spec.tasks]
    finally_ = [_step_flow(s, report, tasks) for s in spec.finally_]
    if _plain(spec, main):
        # No data flow at all (the common case): the graph is dependsOn, nothing to check.
        report.flow = dataflow.Flow(
            main_deps={s.name: list(s.depends_on) for s in main},
            refs={s.name: [] for s in main},
            result_producers={s.name: [] for s in main},
        )
        return
    flow = dataflow.analyse([p.name for p in spec.params], main, finally_)
    report.flow = flow
    for problem in flow.problems:
        report.add(problem.severity, problem.message, step=problem.step, external=problem.external)
    _unknown_producers(report, spec, flow, main)
    _pipeline_results(report, spec, main)


def _plain(spec: PipelineSpec, main: list[dataflow.StepFlow]) -> bool:
    """No references, ``when``, finally steps or pipeline results anywhere."""
    if spec.finally_ or spec.results:
        return False
    return all(s.when is None and not any(_TASKS in t for _, t in s.texts) for s in main)


def _unknown_producers(
    report: Report,
    spec: PipelineSpec,
    flow: dataflow.Flow,
    main: list[dataflow.StepFlow],
) -> None:
    """A warning for a reference to the results of a step whose Task is not applied yet."""
    unknown = {s.name for s in main if s.results is None}
    refs_of = {s.name: s.task_ref.name for s in spec.tasks if s.task_ref is not None}
    for step, refs in flow.refs.items():
        for where, ref in refs:
            if ref.kind == "result" and ref.step in unknown and ref.step != step:
                report.add(
                    "warning",
                    f"task {quote(step)}: {where} uses {ref.text}, but the Task "
                    f"{quote(refs_of.get(ref.step, ref.step))} of task {quote(ref.step)} is "
                    "not known yet: its results are checked once it is applied",
                    step=step,
                )


def _pipeline_results(report: Report, spec: PipelineSpec, main: list[dataflow.StepFlow]) -> None:
    """Each pipeline result's value may use only results of main steps that declare them."""
    declared = {s.name: s.results for s in main}
    for result in spec.results:
        where = f"pipeline result {quote(result.name)}"
        for ref in references.find(result.value):
            if ref.kind != "result":
                report.add(
                    "error",
                    f"{where} uses {ref.text}: a pipeline result can only use "
                    "$(tasks.NAME.results.RESULT) of its tasks",
                )
            elif ref.step not in declared:
                report.add(
                    "error",
                    f"{where} uses {ref.text}, but there is no task {quote(ref.step)}"
                    + did_you_mean(ref.step, declared),
                )
            else:
                names = declared[ref.step]
                if names is not None and ref.name not in names:
                    report.add(
                        "error",
                        f"{where} uses {ref.text}, but task {quote(ref.step)} declares no "
                        f"result {quote(ref.name)}" + did_you_mean(ref.name, names),
                        external=spec_external(spec, ref.step),
                    )


def spec_external(spec: PipelineSpec, step: str) -> bool:
    return any(s.name == step and s.task is None for s in spec.tasks)
