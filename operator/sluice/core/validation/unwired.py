"""Warnings for fields the API accepts but this version does not act on yet.

Schedules and step caching are in the CRDs, checked at apply, and their pure core is
built and tested, but the reconciler does not use them yet (docs/schedules.md).
Accepting such a field silently would let a user believe a pipeline runs nightly:
``kubectl apply`` and ``kubectl sluice lint`` say so instead, as a warning, and the
Pipeline still runs.
"""

from __future__ import annotations

from sluice.api import PipelineSpec
from sluice.core.validation.report import Report

__all__ = ["NOT_YET", "check_unwired"]

NOT_YET = "is not acted on by this version yet"
"""The words every one of these warnings carries."""


def check_unwired(report: Report, spec: PipelineSpec) -> None:
    """A warning for each accepted field that nothing acts on yet."""
    for step in [*spec.tasks, *spec.finally_]:
        if step.cache is not None and step.cache.enabled:
            report.add("warning", f'task "{step.name}": cache {NOT_YET}: the step always runs')
    if spec.schedule is not None:
        report.add(
            "warning",
            f"schedule {NOT_YET}: no run starts on its own; rerun with the sluice.dev/rerun "
            "annotation (docs/schedules.md)",
        )
    if spec.cache is not None and spec.cache.enabled:
        report.add("warning", f"cache {NOT_YET}: every step always runs")
