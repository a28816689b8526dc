"""The working state of one reconcile: the status being built and the plan.

A :class:`Decision` is made afresh by every reconcile from a freshly parsed status (no
part shared with the caller's input) and changed in place by the stages of
``sluice.core.stages``; nothing outside one reconcile ever sees it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from sluice.api import FailureKind, PipelineStatus, RetryPolicy, TaskPhase, TaskStatus
from sluice.api.schedule import RunTrigger
from sluice.core.jobevents import JobEvent
from sluice.core.plan import Event, Plan, TaskTransition
from sluice.core.pods import PodView

if TYPE_CHECKING:
    from sluice.core.cache_key import CacheInputs
    from sluice.core.fanout import Fanout
    from sluice.core.jobspec import ResolvedStep

__all__ = ["Decision"]

_TIMED = frozenset({TaskPhase.SUCCEEDED, TaskPhase.FAILED, TaskPhase.RETRYING})
"""Phases whose transition carries the attempt's duration (for the metrics)."""


class Decision:
    """Mutable state of one reconcile: the pipeline status, the steps' statuses, the plan."""

    def __init__(
        self,
        status: PipelineStatus,
        now: datetime,
        pods: Mapping[str, Sequence[PodView]] | None = None,
        job_events: Mapping[str, Sequence[JobEvent]] | None = None,
    ) -> None:
        self.status = status
        self.now = now
        self.pods: Mapping[str, Sequence[PodView]] = pods or {}
        """What the shell knows of the pods of this pipeline's Jobs, by Job name."""
        self.job_events: Mapping[str, Sequence[JobEvent]] = job_events or {}
        """The Events of the Jobs the shell diagnosed (``core.stuck``), by Job name."""
        self.plan = Plan()
        self.steps: dict[str, TaskStatus] = {t.name: t for t in status.tasks}
        """Step name -> its status; written back to ``status.tasks`` at the end."""
        self.retry_policies: dict[str, RetryPolicy] = {}
        self.declared: dict[str, tuple[str, ...]] = {}
        """The result names of each step that declares results."""
        self.matrixed: dict[str, ResolvedStep] = {}
        """The resolved matrixed steps (fan-out, ``sluice.core.fanout``)."""
        self.fanout: dict[str, Fanout] = {}
        """Where each matrixed step's combinations stand in this reconcile."""
        self.max_matrix = 256
        """The cap on a dynamic matrix's width (``sluice run --max-matrix``)."""
        self.trigger: RunTrigger | None = None
        """What started the current run, when it started in this reconcile."""
        self.history_limit: int | None = None
        """``spec.historyLimit`` (``core.scheduling`` writes ``status.history``)."""
        self.cache: Mapping[str, CacheInputs] = {}
        """The steps whose cache is enabled, with the inputs of their keys that the spec
        fixes (``core.cache_key.inputs``)."""

    def step(self, name: str) -> TaskStatus:
        """The status of step ``name``, created (Pending) when it has none yet."""
        ts = self.steps.get(name)
        if ts is None:
            ts = TaskStatus(name=name)
            self.steps[name] = ts
        return ts

    def phase(self, name: str) -> TaskPhase:
        return self.step(name).phase

    def move(
        self,
        ts: TaskStatus,
        new: TaskPhase,
        failure_kind: FailureKind | None = None,
        attempt_started: datetime | None = None,
    ) -> None:
        """Set a step's phase, recording the transition for the metrics.

        A timed transition's duration is its attempt's: from ``attempt_started`` (the
        attempt's Job's creation) when known, else from the step's ``startedAt`` (its
        first attempt's start), to ``finishedAt``.
        """
        old = ts.phase
        if old == new:
            return
        duration = None
        started = attempt_started or ts.started_at
        if new in _TIMED and started and ts.finished_at:
            duration = (ts.finished_at - started).total_seconds()
        ts.phase = new
        if new != TaskPhase.RUNNING:
            ts.stuck_at = None  # stuck is a state of a running attempt only
        self.plan.transitions.append(
            TaskTransition(ts.name, old, new, ts.attempts, failure_kind, duration)
        )

    def event(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.plan.events.append(Event(type_, reason, message))

    def due_in(self, when: datetime | None) -> None:
        """Ask to be called again by ``when`` (the earliest of all such times wins)."""
        if when is None:
            return
        seconds = max((when - self.now).total_seconds(), 0.0)
        current = self.plan.requeue_after
        self.plan.requeue_after = seconds if current is None else min(current, seconds)
