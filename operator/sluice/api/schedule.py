"""The API of schedules, run history and caching (issue 16).

Spec side: ``spec.schedule`` (:class:`Schedule`), ``spec.historyLimit``, ``cache`` on a step
and on the pipeline (:class:`CachePolicy`), ``cacheVersion`` on a Task spec. Status side:
``status.schedule`` (:class:`ScheduleStatus`) and ``status.history`` (:class:`RunRecord`).

The schema refuses what it can say cheaply (the shape of a cron expression, bounds); what it
cannot (a cron field out of range, an unknown time zone, ``@every`` below the minimum) is
checked by ``sluice.core.validation.schedule``, with messages naming the field.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from pydantic import Field

from sluice.api.base import Model
from sluice.api.constants import MAX_SECONDS
from sluice.api.enums import PipelinePhase
from sluice.api.times import Timestamp

__all__ = [
    "CACHE_CAP_PER_PIPELINE",
    "CRON_MACROS",
    "CRON_MESSAGE",
    "CRON_SHAPE",
    "HISTORY_LIMIT_DEFAULT",
    "HISTORY_LIMIT_MAX",
    "MAX_CACHE_VERSION",
    "MAX_CRON",
    "MAX_HISTORY_MESSAGE",
    "MIN_EVERY_SECONDS",
    "CachePolicy",
    "CacheRecord",
    "ConcurrencyPolicy",
    "RunRecord",
    "RunTrigger",
    "Schedule",
    "ScheduleStatus",
]

HISTORY_LIMIT_DEFAULT: Final = 10
HISTORY_LIMIT_MAX: Final = 50
MIN_EVERY_SECONDS: Final = 10
MAX_CRON: Final = 200
MAX_TIME_ZONE: Final = 64  # the longest IANA name is 32 characters
MAX_HISTORY_MESSAGE: Final = 256
MAX_CACHE_VERSION: Final = 63
CACHE_CAP_PER_PIPELINE: Final = 100
"""At most this many entries in ``status.cache`` (fewer for a pipeline with few steps)."""

#: The macros, as the 5-field expressions they stand for (Vixie cron's table).
CRON_MACROS: Final[dict[str, str]] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_GO_DURATION: Final = r"([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)"
#: The shape the schema checks (RE2, in CEL): a macro, ``@every <Go duration>`` or 5 fields.
CRON_SHAPE: Final = (
    r"^ *(@(yearly|annually|monthly|weekly|daily|midnight|hourly)"
    rf"|@every +({_GO_DURATION})+"
    r"|[0-9A-Za-z*?/,#-]+( +[0-9A-Za-z*?/,#-]+){4}) *$"
)
CRON_MESSAGE: Final = (
    "cron must be 5 fields (minute hour day-of-month month day-of-week), a macro "
    "(@yearly, @monthly, @weekly, @daily, @hourly) or @every <duration> (e.g. @every 1m30s)"
)


class ConcurrencyPolicy(StrEnum):
    """What a tick does while the previous run is still running."""

    FORBID = "Forbid"
    """Skip the tick (Event ``ScheduleSkipped``); the default."""
    REPLACE = "Replace"
    """Stop the running run's Jobs and start a new run."""


class RunTrigger(StrEnum):
    """What started a run."""

    CREATED = "Created"
    RERUN = "Rerun"
    SCHEDULE = "Schedule"
    RECOVERED = "Recovered"
    """Adopted from the Jobs after the status was lost."""


class Schedule(Model):
    """Run the pipeline on a clock: each tick starts a new run, as ``sluice.dev/rerun`` does."""

    cron: str = Field(
        min_length=1,
        max_length=MAX_CRON,
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": f"self.matches(r'{CRON_SHAPE}')", "message": CRON_MESSAGE}
            ]
        },
        description="When to run: 5-field cron (minute hour day-of-month month day-of-week), "
        "@hourly/@daily/@weekly/@monthly/@yearly, or @every <duration> (at least 10s).",
    )
    time_zone: str = Field(
        default="UTC",
        min_length=1,
        max_length=MAX_TIME_ZONE,
        description="IANA time zone the cron expression is read in, e.g. Europe/Berlin. "
        "A time skipped by a DST change runs at the next valid time, a repeated one once.",
    )
    concurrency_policy: ConcurrencyPolicy = Field(
        default=ConcurrencyPolicy.FORBID,
        description="Forbid: skip a tick while a run is running; Replace: stop it, start anew.",
    )
    starting_deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_SECONDS,
        description="A tick missed by more than this (e.g. the operator was down) is not run; "
        "at most one missed tick, the latest, is caught up.",
    )


class CachePolicy(Model):
    """Skip a step whose inputs match a succeeded attempt's (the key: docs/schedules.md)."""

    enabled: bool = Field(default=False, strict=True, description="Use the cache.")
    max_age_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_SECONDS,
        description="Use an entry at most this old; default: as long as it is kept.",
    )


class ScheduleStatus(Model):
    """Where the schedule stands."""

    last_schedule_time: Timestamp | None = Field(
        default=None, description="The latest tick acted on (run, skipped or replaced)."
    )
    next_schedule_time: Timestamp | None = Field(default=None, description="The next tick.")


class RunRecord(Model):
    """One run in ``status.history``."""

    run: int = Field(ge=1, description="Run number.")
    phase: PipelinePhase | None = Field(default=None, description="Phase the run ended in.")
    trigger: RunTrigger = Field(description="What started it: Created, Rerun, Schedule, ...")
    started_at: Timestamp | None = Field(default=None, description="When it started.")
    finished_at: Timestamp | None = Field(default=None, description="When it finished.")
    message: str | None = Field(
        default=None, max_length=MAX_HISTORY_MESSAGE, description="How it ended."
    )


class CacheRecord(Model):
    """One entry of ``status.cache``: a succeeded step other runs of the pipeline may reuse."""

    step: str = Field(description="The step that succeeded.")
    key: str = Field(description="Its cache key (v1- and a sha256, docs/schedules.md).")
    run: int = Field(ge=1, description="The run it succeeded in.")
    finished_at: Timestamp = Field(description="When it succeeded.")
    results: dict[str, str] | None = Field(default=None, description="Its results, by name.")
