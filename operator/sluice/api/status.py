"""The pydantic models of a Pipeline's status: the operator's memory of a run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pydantic import Field

from sluice.api.constants import RERUN_ANNOTATION, RETRY_ANNOTATION
from sluice.api.enums import ConditionStatus, PipelinePhase, TaskPhase
from sluice.api.matrix import MatrixStatus
from sluice.api.models import BY_NAME, MAX_STEPS, Model
from sluice.api.schedule import (
    CACHE_CAP_PER_PIPELINE,
    HISTORY_LIMIT_MAX,
    CacheRecord,
    RunRecord,
    ScheduleStatus,
)
from sluice.api.times import Timestamp

__all__ = ["Condition", "PipelineStatus", "TaskStatus", "parse_pipeline_status"]

_MAX_CONDITIONS: Final = 32


class Condition(Model):
    """A Kubernetes-convention condition, so generic tooling (kubectl wait) understands us."""

    type: str = Field(description="Type of the condition, e.g. Succeeded, Progressing, Degraded.")
    status: ConditionStatus = Field(description="Whether the condition holds.")
    reason: str = Field(description="Machine-readable reason of the last transition (CamelCase).")
    message: str = Field(default="", description="Human-readable details of the last transition.")
    last_transition_time: Timestamp = Field(description="When the condition last changed status.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="Pipeline generation the condition was computed from."
    )


class TaskStatus(Model):
    """Where one step stands in the current run; the operator's memory across restarts."""

    name: str = Field(description="Name of the step.")
    phase: TaskPhase = Field(
        default=TaskPhase.PENDING, description="Phase of the step in this run."
    )
    attempts: int = Field(default=0, ge=0, description="Attempts started so far in this run.")
    job: str | None = Field(default=None, description="Name of the Job of the latest attempt.")
    started_at: Timestamp | None = Field(
        default=None, description="When the first attempt started."
    )
    finished_at: Timestamp | None = Field(default=None, description="When the step finished.")
    next_retry_at: Timestamp | None = Field(
        default=None, description="When the next attempt starts, while the step is Retrying."
    )
    reason: str | None = Field(
        default=None,
        description="Reason of the latest failure or skip, e.g. OOMKilled, WhenFalse, WhenError.",
    )
    message: str | None = Field(
        default=None, description="Details of the latest failure, in the Job's or pod's own words."
    )
    stuck_at: Timestamp | None = Field(
        default=None,
        description="When the running attempt was found stuck before its pod started "
        "(reason and message say why); cleared once the pod runs.",
    )
    spec_hash: str | None = Field(
        default=None, description="Hash of the resolved task definition the latest attempt ran."
    )
    retry_base: int = Field(
        default=0, ge=0, description="Attempt count at which the current retry budget began."
    )
    results: dict[str, str] | None = Field(
        default=None,
        description="Results of the succeeded attempt, by name (kept after its Job is gone).",
    )
    matrix: MatrixStatus | None = Field(
        default=None, description="The combinations of a matrixed step, counted by phase."
    )
    cache_key: str | None = Field(
        default=None, description="Cache key of the step's inputs, when its cache is enabled."
    )


class PipelineStatus(Model):
    """The observed state of the current run, written only by the operator."""

    phase: PipelinePhase | None = Field(
        default=None,
        description=(
            "Phase of the run: Pending, Running, Succeeded, Degraded (a step failed past its "
            "retries and waits for a fix) or Failed (terminal)."
        ),
    )
    run: int = Field(default=0, ge=0, description="Run number, incremented by each fresh run.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="Pipeline generation the status was computed from."
    )
    started_at: Timestamp | None = Field(default=None, description="When the run started.")
    finished_at: Timestamp | None = Field(default=None, description="When the run finished.")
    progress: str | None = Field(
        default=None,
        description="Done (succeeded or skipped) steps over all steps, finally steps included, "
        "e.g. 4/6.",
    )
    message: str | None = Field(default=None, description="One sentence on the state of the run.")
    tasks: list[TaskStatus] = Field(
        default_factory=list,
        max_length=MAX_STEPS,
        json_schema_extra=BY_NAME,
        description="State of each step in the current run.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=_MAX_CONDITIONS,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
        description="Standard conditions: Succeeded, Progressing, Degraded.",
    )
    first_result: str | None = Field(
        default=None,
        description="The result the run first settled at (Succeeded, Degraded or Failed): "
        "what sluice_pipeline_runs_total counted it as. A later success of the same run "
        "after a fix counts in sluice_pipeline_recoveries_total.",
    )
    results: dict[str, str] | None = Field(
        default=None,
        description="The pipeline's results (spec.results, resolved), once the run succeeded.",
    )
    finally_for: str | None = Field(
        default=None,
        description=(
            "The outcome of the main steps (Succeeded, Degraded or Timeout) the finally "
            "steps last ran for."
        ),
    )
    schedule: ScheduleStatus | None = Field(
        default=None, description="The schedule's last and next ticks."
    )
    history: list[RunRecord] | None = Field(
        default=None,
        max_length=HISTORY_LIMIT_MAX,
        description="The latest runs, newest first (spec.historyLimit of them).",
    )
    cache: list[CacheRecord] | None = Field(
        default=None,
        max_length=CACHE_CAP_PER_PIPELINE,
        description="Succeeded steps of earlier runs that cached steps reuse, newest first.",
    )
    ignore_cache: bool | None = Field(
        default=None,
        description="The current run reads no cache entry (a rerun whose value starts with "
        "nocache-); what it computes is still remembered.",
    )
    handled_retry: str | None = Field(
        default=None, description=f"Value of the {RETRY_ANNOTATION} annotation already acted on."
    )
    handled_rerun: str | None = Field(
        default=None, description=f"Value of the {RERUN_ANNOTATION} annotation already acted on."
    )


def parse_pipeline_status(d: Mapping[str, Any] | None) -> PipelineStatus:
    """Read a Pipeline's ``status``; a new Pipeline has none, which reads as the empty status."""
    return PipelineStatus.model_validate(dict(d or {}))
