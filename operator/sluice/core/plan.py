"""What a reconcile decides: the :class:`Plan` the shell carries out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sluice.api import FailureKind, TaskPhase

__all__ = ["Event", "Plan", "ScheduleOutcome", "TaskTransition"]


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class TaskTransition:
    """A step's phase change, for metrics: the shell counts and times these."""

    task: str
    """The step's name."""
    old: TaskPhase
    new: TaskPhase
    attempt: int
    failure_kind: FailureKind | None = None
    duration_s: float | None = None


@dataclass(frozen=True)
class ScheduleOutcome:
    """One outcome of a tick, for the metrics: ``started`` (with its lag from the tick),
    ``skipped`` or ``missed`` (``count`` ticks)."""

    outcome: Literal["started", "skipped", "missed"]
    count: int = 1
    lag_seconds: float | None = None


@dataclass
class Plan:
    create: list[dict[str, Any]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    status: dict[str, Any] | None = None
    """A merge patch to the status subresource when it changed, else None."""
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    """Seconds until something is due (a backoff, a timeout, a TTL), if anything."""
    transitions: list[TaskTransition] = field(default_factory=list)
    run_finished: str | None = None
    """The result ("Succeeded", "Failed", "Degraded") when the run first settled now:
    once per run (``status.firstResult`` remembers it)."""
    diagnose: list[str] = field(default_factory=list)
    """Jobs whose attempt runs past the stuck threshold without its pod running: the
    shell reads their pods and Events (unless it read them lately) and reconciles
    again with them (``pods=``, ``job_events=``; ``core.stuck``)."""
    run_recovered: bool = False
    """The run, first settled as Degraded, succeeded now (after a fix or a retry)."""
    scheduled: list[ScheduleOutcome] = field(default_factory=list)
    """What the schedule did now (``core.scheduling``): runs started, ticks skipped or missed."""
    cache_hits: int = 0
    """Steps not run now because a cache entry matched (``core.caching``)."""
    cache_misses: int = 0
    """Steps with a cache policy that found no entry and start an attempt now."""
