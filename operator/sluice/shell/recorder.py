"""What a reconcile's plan means for the metrics (counters, histograms, gauges).

Only the leader exports the per-pipeline and phase gauges (`sluice_pipeline_degraded`,
`sluice_pipelines`): a standby's would be stale the moment it stopped leading,
and a Service in front of both would count every pipeline twice. They are
cleared when this replica stops leading and rebuilt when it leads again
(every pipeline is reconciled then); `sluice_leader` says which replica leads.

`sluice_step_last_duration_seconds{namespace,pipeline,step,result}` is the
duration of the step's last attempt that ended with that result (`succeeded`, or
`failed` for an attempt that failed, retried or not): at most two series a step,
each kept in place from one attempt to the next (a failed attempt does not hide
the last successful one's duration, the one to watch for a slower step). Only
attempts that ran count (a Job ended), not a step failed while waiting. A
series goes when its step leaves the spec (the status lists the spec's steps)
or its pipeline is deleted, and all go when this replica stops leading. A new
leader exports a step's series again when its next attempt ends: the status
keeps when a step's first attempt started, not its last.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from sluice.api import parse_rfc3339
from sluice.core.reconcile import Plan
from sluice.metrics import Metrics
from sluice.shell.jobs import PipelineKey

__all__ = ["PHASES", "Recorder"]

PHASES = ("Pending", "Running", "Succeeded", "Degraded", "Failed")
_ENDED = {"Succeeded": "succeeded", "Failed": "failed", "Retrying": "failed"}
"""Phases that end a running attempt, and the `result` label of its duration."""


class Recorder:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.phases: dict[PipelineKey, str | None] = {}
        self.stuck: dict[PipelineKey, tuple[str, ...]] = {}
        """The reasons of each pipeline's stuck steps (sluice_steps_stuck)."""
        self.leading = False

    def lead(self, leading: bool) -> None:
        """This replica leads from now on (True) or not any more (False)."""
        self.leading = leading
        self.metrics.leader.set(1 if leading else 0)
        if not leading:
            self.phases.clear()
            self.stuck.clear()
            self.metrics.steps_stuck.clear()
            self.metrics.pipeline_degraded.clear()
            self.metrics.step_last_duration.clear()
            self.metrics.pipelines.clear()

    def plan(self, key: PipelineKey, plan: Plan, status: Mapping[str, Any]) -> None:
        """Count what one reconcile did; `status` is the pipeline's status after it."""
        ns, name = key
        m = self.metrics
        for t in plan.transitions:
            if t.new == "Succeeded":
                m.task_attempts.labels(ns, "succeeded").inc()
            elif t.new == "Failed" and t.old == "Running":
                m.task_attempts.labels(ns, "failed").inc()
            elif t.new == "Retrying":
                m.task_attempts.labels(ns, "retried").inc()
                m.task_retries.labels(ns, t.failure_kind or "unknown").inc()
            result = _ENDED.get(t.new) if t.old == "Running" else None
            if t.duration_s is not None and result is not None:
                m.task_duration.labels(ns, result).observe(max(t.duration_s, 0.0))
        if plan.run_finished:
            m.pipeline_runs.labels(ns, plan.run_finished).inc()
            started, finished = status.get("startedAt"), status.get("finishedAt")
            if started and finished:
                d = parse_rfc3339(finished) - parse_rfc3339(started)
                m.run_duration.labels(ns, plan.run_finished).observe(d.total_seconds())
        if plan.run_recovered:
            m.pipeline_recoveries.labels(ns).inc()
        for o in plan.scheduled:
            m.scheduled_runs.labels(ns, o.outcome).inc(o.count)
            if o.lag_seconds is not None:
                m.schedule_lag.observe(o.lag_seconds)
        if plan.cache_hits:
            m.cache_hits.labels(ns).inc(plan.cache_hits)
        if plan.cache_misses:
            m.cache_misses.labels(ns).inc(plan.cache_misses)
        if not self.leading:
            return
        phase = status.get("phase")
        if key not in self.phases or self.phases[key] != phase:
            self.phases[key] = phase
            self._phase_gauge()
        m.pipeline_degraded.labels(ns, name).set(1 if phase == "Degraded" else 0)
        reasons = _stuck_reasons(status)
        if reasons != self.stuck.get(key, ()):
            self.stuck[key] = reasons
            self._stuck_gauge(ns)
        self._step_durations(key, plan, status)

    def _step_durations(self, key: PipelineKey, plan: Plan, status: Mapping[str, Any]) -> None:
        """Set the last attempts' durations; drop the series of steps not in the spec."""
        gauge = self.metrics.step_last_duration
        for t in plan.transitions:
            result = _ENDED.get(t.new) if t.old == "Running" else None
            if t.duration_s is not None and result is not None:
                gauge.set(key, t.task, result, max(t.duration_s, 0.0))
        steps = {t.get("name") for t in status.get("tasks") or []}
        for step, result in gauge.steps(key):
            if step not in steps:
                gauge.remove(key, step, result)

    def forget(self, key: PipelineKey) -> None:
        self.phases.pop(key, None)
        if self.stuck.pop(key, None):
            self._stuck_gauge(key[0])
        with contextlib.suppress(KeyError):
            self.metrics.pipeline_degraded.remove(*key)
        self.metrics.step_last_duration.forget(key)
        if self.leading:
            self._phase_gauge()

    def _phase_gauge(self) -> None:
        counts = dict.fromkeys(PHASES, 0)
        for phase in self.phases.values():
            if phase in counts:
                counts[phase] += 1
        for phase, n in counts.items():
            self.metrics.pipelines.labels(phase).set(n)

    def _stuck_gauge(self, ns: str) -> None:
        counts: dict[str, int] = {}
        for key, reasons in self.stuck.items():
            if key[0] == ns:
                for reason in reasons:
                    counts[reason] = counts.get(reason, 0) + 1
        gauge = self.metrics.steps_stuck
        for labels in [s.labels for m in gauge.collect() for s in m.samples]:
            if labels["namespace"] == ns and labels["reason"] not in counts:
                gauge.remove(ns, labels["reason"])
        for reason, n in counts.items():
            gauge.labels(ns, reason).set(n)


def _stuck_reasons(status: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(
        sorted(
            str(t.get("reason") or "Unknown")
            for t in status.get("tasks") or []
            if t.get("phase") == "Running" and t.get("stuckAt")
        )
    )
