"""The data-flow checks of a Pipeline (references, ``when``, main vs finally steps).

The one place validation calls :func:`sluice.core.dataflow.analyse`: it builds each step's
:class:`~sluice.core.dataflow.StepFlow` from the API models, adds the problems to the
report (in the words of ``sluice.core.references`` and ``sluice.core.when``) and keeps the
:class:`~sluice.core.dataflow.Flow` on the report (``Report.flow``) for the reconciler,
which schedules on its merged dependencies and evaluates its compiled ``when``\\ s.
"""

from __future__ import annotations

from sluice.api import PipelineSpec, PipelineTask, TaskSpec
from sluice.core import dataflow, references
from sluice.core.validation.report import Report

__all__ = ["check_flow", "step_flow"]


def _task_of(report: Report, step: PipelineTask) -> TaskSpec | None:
    if step.task is not None:
        return step.task
    return report.tasks.get(step.task_ref.name) if step.task_ref is not None else None


def step_flow(step: PipelineTask, task: TaskSpec | None) -> dataflow.StepFlow:
    """What data flow needs of one step (its task None when not known yet)."""
    texts = list(
        references.iter_texts(
            task.command if task is not None else None,
            task.args if task is not None else None,
            task.env if task is not None else None,
            params=[(p.name, p.value) for p in step.params],
        )
    )
    return dataflow.StepFlow(
        name=step.name,
        depends_on=list(step.depends_on),
        texts=texts,
        when=step.when,
        results=[r.name for r in task.results] if task is not None else None,
        external=step.task is None,
    )


def check_flow(report: Report, spec: PipelineSpec) -> None:
    """Analyse the data flow of ``spec``; its problems go into ``report``, the flow into
    ``report.flow``. Run after the steps' checks (it reads ``report.tasks``)."""
    flow = dataflow.analyse(
        [p.name for p in spec.params],
        [step_flow(s, _task_of(report, s)) for s in spec.tasks],
        [step_flow(s, _task_of(report, s)) for s in spec.finally_],
    )
    for problem in flow.problems:
        report.add(problem.severity, problem.message, step=problem.step, external=problem.external)
    report.flow = flow
