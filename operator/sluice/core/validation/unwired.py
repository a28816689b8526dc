"""Warnings for fields the API accepts but this version does not act on yet.

Fan-out (``matrix``) is in the CRDs, checked at apply, and its pure core is built and
tested, but the reconciler does not use it yet (docs/fan-out.md). Accepting such a field
silently would let a user believe a sweep ran 256 times: ``kubectl apply`` and ``kubectl
sluice lint`` say so instead, as a warning, and the Pipeline still runs.
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
        if step.matrix is not None:
            report.add(
                "warning",
                f'task "{step.name}": matrix {NOT_YET}: the step runs once, with its '
                "params' other values (fan-out: docs/fan-out.md)",
                step=step.name,
            )
