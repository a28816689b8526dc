"""Warnings for a step cache that cannot apply.

Step caching (``cache``, docs/schedules.md) skips plain main steps whose inputs did not
change. A matrixed step (each combination has its own inputs) and a finally step (it reads
``$(tasks.status)``, which is in no key) always run. A pipeline-wide ``cache`` simply does
not cover them; a ``cache: {enabled: true}`` written on such a step itself would let its
author believe it is cached, so ``kubectl apply`` and ``kubectl sluice lint`` say it is not,
as a warning, and the Pipeline still runs.
"""

from __future__ import annotations

from sluice.api import PipelineSpec
from sluice.core.validation.report import Report

__all__ = ["NOT_CACHED", "check_cache_scope"]

NOT_CACHED = "cache does not apply to"
"""The words every one of these warnings carries."""


def check_cache_scope(report: Report, spec: PipelineSpec) -> None:
    """A warning for each step whose own ``cache`` is enabled but cannot apply."""
    for kind, steps in (("matrixed steps", spec.tasks), ("finally steps", spec.finally_)):
        for step in steps:
            on = step.cache is not None and step.cache.enabled
            if on and (kind == "finally steps" or step.matrix is not None):
                report.add(
                    "warning",
                    f'task "{step.name}": {NOT_CACHED} {kind}: the step always runs',
                    step=step.name,
                )
