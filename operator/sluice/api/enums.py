"""The enumerations of the Sluice API: phases, failure kinds, policies."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

__all__ = [
    "ConditionStatus",
    "FailureKind",
    "FailurePolicy",
    "JobRetention",
    "PipelinePhase",
    "TaskPhase",
]


class TaskPhase(StrEnum):
    """Where a step stands in a run."""

    PENDING = "Pending"
    """Not started: waiting for its dependencies, a slot, or the first reconcile."""
    RUNNING = "Running"
    """An attempt's Job is running."""
    RETRYING = "Retrying"
    """An attempt failed; the next one starts at ``nextRetryAt``."""
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    """Failed past its retry budget (or not retryable): waits for a fix or a retry."""
    BLOCKED = "Blocked"
    """A step it depends on failed."""
    SKIPPED = "Skipped"
    """Never started: the pipeline timed out first."""


class PipelinePhase(StrEnum):
    """Where a run stands."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    DEGRADED = "Degraded"
    """A step failed past its retries; the run waits for a fix."""
    FAILED = "Failed"
    """Terminal: an invalid spec (until fixed) or a timeout (until a rerun)."""


FailurePolicy = Literal["ContinueIndependent", "StopAll"]
JobRetention = Literal["Failed", "All", "None"]
ConditionStatus = Literal["True", "False", "Unknown"]


class FailureKind(StrEnum):
    """Why an attempt failed: retry policies pick which kinds deserve another attempt."""

    FAILED = "Failed"
    """The container exited non-zero."""
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    """The attempt ran past its timeout."""
    EVICTED = "Evicted"
    """The pod was disrupted: eviction, preemption or node loss."""
    POD_FAILURE = "PodFailure"
    """The pod or Job vanished or failed for another reason than its container's exit."""
