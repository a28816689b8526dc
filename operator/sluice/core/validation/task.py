"""Checks of a Task's spec (also an inline task of a Pipeline step)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

from pydantic import ValidationError

from sluice.api import IMAGE_MESSAGE, TaskSpec, parse_task_spec
from sluice.core import params, results
from sluice.core.validation.k8s import (
    env_from_problems,
    env_problems,
    pod_template_problems,
    resources_problems,
)
from sluice.core.validation.report import (
    MAX_OBJECT_BYTES,
    Report,
    Severity,
    did_you_mean,
    names_list,
    pydantic_problems,
    quote,
    twice,
)
from sluice.k8s.syntax import is_image

__all__ = ["check_task", "task_problems"]

_PARAM_START: Final = "$(params."


def check_task(spec: Any, *, size: int | None = None) -> Report:
    """Check a Task object's ``spec``; ``size`` is the object's JSON size, if known."""
    report = Report("task")
    if not isinstance(spec, Mapping):
        report.add("error", "spec must be an object with an image")
        return report
    try:
        task = parse_task_spec(spec)
    except ValidationError as err:
        for problem in pydantic_problems(err, "spec"):
            report.add("error", f"invalid spec: {problem}")
        return report
    report.task = task
    for severity, message in task_problems(task):
        report.add(severity, message)
    if size is not None and size > MAX_OBJECT_BYTES:
        report.add(
            "error",
            f"the Task is {size // 1024} KiB, over the {MAX_OBJECT_BYTES // 1024} KiB the "
            "API server stores; move large values into ConfigMaps",
        )
    return report


def task_problems(task: TaskSpec) -> Iterator[tuple[Severity, str]]:
    """Problems of a (parsed) task definition; the caller prefixes where it is."""
    if not is_image(task.image):
        yield "error", f"image {quote(task.image)} {IMAGE_MESSAGE}"
    declared = [p.name for p in task.params]
    for name in twice(declared):
        yield "error", f"parameter {quote(name)} is declared twice"
    yield from _param_references(task, set(declared))
    for problem in results.check_names([r.name for r in task.results]):
        yield "error", problem
    yield from env_problems(task.env)
    yield from env_from_problems(task.env_from)
    yield from resources_problems(task.resources)
    yield from pod_template_problems(task.pod_template)
    if task.retry is not None:
        b = task.retry.backoff
        if b.max_seconds < b.initial_seconds:
            yield (
                "warning",
                f"retry.backoff.maxSeconds ({b.max_seconds}) is less than initialSeconds "
                f"({b.initial_seconds}): every retry waits {b.max_seconds}s",
            )


def _texts(task: TaskSpec) -> Iterator[tuple[str, str]]:
    """(where, text) of everything $(params.X) is substituted into."""
    for i, text in enumerate(task.command or []):
        yield f"command[{i}]", text
    for i, text in enumerate(task.args or []):
        yield f"args[{i}]", text
    for i, var in enumerate(task.env or []):
        value = var.get("value") if isinstance(var, Mapping) else None
        if isinstance(value, str):
            yield f"env {quote(var.get('name', i))}", value


def _param_references(task: TaskSpec, declared: set[str]) -> Iterator[tuple[Severity, str]]:
    used: set[str] = set()
    for where, text in _texts(task):
        if _PARAM_START not in text:
            continue
        refs = params.referenced_params(text)
        used |= refs
        for name in sorted(refs - declared):
            yield (
                "error",
                f"{where} uses $(params.{name}), which the task does not declare"
                + (f" (it declares {names_list(sorted(declared))})" if declared else "")
                + did_you_mean(name, declared),
            )
        well_formed = sum(1 for _ in params.PARAM_REF.finditer(text))
        if text.count(_PARAM_START) > well_formed:
            yield (
                "warning",
                f"{where} has {quote(_PARAM_START)} that is not a parameter reference: a "
                "reference is $(params.NAME), NAME a letter or '_' then letters, digits, "
                "'_', '.' or '-'",
            )
    for name in declared - used:
        yield "warning", f"parameter {quote(name)} is declared but not used"
