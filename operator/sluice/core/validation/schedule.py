"""Checks of a Pipeline's schedule: what the CRD schema cannot say about ``spec.schedule``.

The schema checks the shape (5 fields, a macro or ``@every <duration>``) and the bounds of
``historyLimit``, ``startingDeadlineSeconds`` and ``cache.maxAgeSeconds``; here: a cron
field out of range (``bad minute``), an unknown time zone, ``@every`` below the minimum
(10 s) or not in whole seconds, in words that name the field (``sluice.core.schedule``).
"""

from __future__ import annotations

from sluice.api import PipelineSpec
from sluice.core.schedule import ScheduleError, parse_cron
from sluice.core.validation.report import Report

__all__ = ["check_schedule"]


def check_schedule(report: Report, spec: PipelineSpec) -> None:
    """Add an error for a schedule that cannot tick."""
    if spec.schedule is None:
        return
    try:
        parse_cron(spec.schedule.cron, spec.schedule.time_zone)
    except ScheduleError as err:
        report.add("error", str(err))
