"""Checks of the steps' ``matrix`` (fan-out, issue 15), in the package's words.

What the schema and CEL say already (non-empty ``values``, unique param names, exactly one
of ``values`` and ``fromResult``) is checked again so the operator stays total; what they
cannot say is checked only here: a matrix param the Task does not declare or the step
also sets, a ``fromResult`` naming an unknown step or an undeclared result (the rules and
words of ``sluice.core.references``), and, for a static matrix, ``minSuccess`` above its
width and a width over the cap (``sluice.core.matrix.too_wide``, the run-time message).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sluice.api import PipelineSpec, PipelineTask, TaskSpec
from sluice.core import matrix as mx
from sluice.core.validation.report import Finding, did_you_mean, quote, twice

__all__ = ["check_matrices", "check_matrix", "matrix_param_names", "matrix_texts"]


def matrix_param_names(step: PipelineTask) -> frozenset[str]:
    """The params the step's matrix gives a value to (none without a matrix)."""
    return frozenset(p.name for p in step.matrix.params) if step.matrix is not None else frozenset()


def matrix_texts(step: PipelineTask) -> list[tuple[str, str]]:
    """``(where, text)`` of the step's ``fromResult`` references: what data flow adds to the
    step's texts (``StepFlow.texts``) so a producer becomes a dependency of its consumer."""
    if step.matrix is None:
        return []
    return [
        (f"matrix param {quote(p.name)}", p.from_result)
        for p in step.matrix.params
        if p.from_result is not None
    ]


def _shape(step: PipelineTask, where: str) -> list[Finding]:
    assert step.matrix is not None
    out = [
        Finding("error", f"{where}: matrix param {quote(n)} is listed twice", step.name)
        for n in twice(p.name for p in step.matrix.params)
    ]
    for p in step.matrix.params:
        if (p.values is None) == (p.from_result is None):
            out.append(
                Finding(
                    "error",
                    f"{where}: matrix param {quote(p.name)}: exactly one of values and "
                    "fromResult must be set",
                    step.name,
                )
            )
        elif p.values is not None and not p.values:
            out.append(
                Finding("error", f"{where}: matrix param {quote(p.name)} has no values", step.name)
            )
    return out


def _params(step: PipelineTask, task: TaskSpec | None, where: str, external: bool) -> list[Finding]:
    assert step.matrix is not None
    out: list[Finding] = []
    own = {p.name for p in step.params}
    declared = [p.name for p in task.params] if task is not None else None
    for p in step.matrix.params:
        if p.name in own:
            out.append(
                Finding(
                    "error",
                    f"{where} sets parameter {quote(p.name)} both in params and in its matrix",
                    step.name,
                )
            )
        if declared is not None and p.name not in declared:
            out.append(
                Finding(
                    "error",
                    f"{where}: matrix param {quote(p.name)} is not a parameter its task "
                    "declares" + did_you_mean(p.name, declared),
                    step.name,
                    external,
                )
            )
    return out


def _width(step: PipelineTask, where: str, cap: int) -> list[Finding]:
    assert step.matrix is not None
    axes = mx.static_axes(step.matrix)
    if axes is None or any(not a.values for a in axes):
        return []  # dynamic: checked when the producer's result is known
    try:
        n = mx.check_width(step.name, axes, cap)
        mx.parse_min_success(step.name, step.matrix.min_success, n)
    except mx.InvalidMatrix as err:
        return [Finding("error", str(err), step.name)]
    return []


def check_matrix(
    step: PipelineTask,
    task: TaskSpec | None,
    *,
    external: bool = False,
    cap: int = mx.DEFAULT_MAX_MATRIX,
) -> list[Finding]:
    """What is wrong with one step's matrix (none when it has none). ``task`` is its task
    (None when not known: the checks that need it are skipped); ``external``: it is a
    Task object, which may change later."""
    if step.matrix is None:
        return []
    where = f"task {quote(step.name)}"
    return [*_shape(step, where), *_params(step, task, where, external), *_width(step, where, cap)]


def check_matrices(
    spec: PipelineSpec,
    tasks: Mapping[str, TaskSpec],
    *,
    cap: int = mx.DEFAULT_MAX_MATRIX,
) -> list[Finding]:
    """Every matrix of the pipeline, main and finally steps, in their order. ``tasks`` holds
    the referenced Tasks known to be valid (``Report.tasks``); a step whose Task is missing
    has its own finding already."""
    steps: Sequence[PipelineTask] = [*spec.tasks, *spec.finally_]
    if not any(s.matrix is not None for s in steps):
        return []  # the common case, cheaply
    task_of = {
        s.name: s.task if s.task is not None else tasks.get(s.task_ref.name if s.task_ref else "")
        for s in steps
    }
    out: list[Finding] = []
    for s in steps:
        out += check_matrix(s, task_of[s.name], external=s.task is None, cap=cap)
    return out
