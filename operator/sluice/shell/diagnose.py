"""The shell's half of stuck steps (``core.stuck``): read a stuck Job's pods and Events.

A reconcile asks for a diagnosis (``Plan.diagnose``) only for the Jobs whose attempt
has run past ``--stuck-after`` without its pod known to run. For those, and only
those, :class:`Diagnoser` reads the Job's pods (:func:`job_pods`: one list by the
Job's ``job-name`` label) and, when it has none, the Job's ``FailedCreate`` Events
(:func:`job_events`: one list by ``involvedObject``), then the worker decides again
with what it read (``pods=``, ``job_events=``). A reading is kept while its Job
exists: a pod seen running is not read again, and a stuck one at most every
``interval`` seconds (the plan's wake-up brings the next look). Steps that finish
before the threshold cost no request at all.

:func:`job_pods` is the one place pods are read: with a label-selected pod view in
the operator, it consults that view first and reads only when the view has nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sluice.core.jobevents import JobEvent, observe_event
from sluice.core.pods import PodView
from sluice.core.reconcile import Plan
from sluice.core.stuck import REDIAGNOSE, STUCK_AFTER
from sluice.shell.jobs import PipelineKey
from sluice.shell.kube import ApiError, Kube
from sluice.shell.podreads import job_pods

__all__ = ["Diagnoser", "job_events", "job_pods"]

log = logging.getLogger(__name__)


async def job_events(kube: Kube, namespace: str, job: str) -> list[JobEvent]:
    """The Job controller's FailedCreate Events of one Job (why it has no pod)."""
    fields = f"involvedObject.kind=Job,involvedObject.name={job},reason=FailedCreate"
    page = await kube.list_events(namespace, fields)
    return [observe_event(e) for e in page.get("items") or []]


@dataclass(frozen=True)
class _Reading:
    at: float
    pods: tuple[PodView, ...] | None
    """None: the read failed (nothing known; tried again after ``interval``)."""
    events: tuple[JobEvent, ...] = ()


class Diagnoser:
    """What was read of the Jobs a reconcile asked about, per pipeline."""

    def __init__(
        self,
        kube: Kube,
        stuck_after: float = STUCK_AFTER,
        interval: float = REDIAGNOSE,
        on_read: Callable[[], None] = lambda: None,
    ) -> None:
        self.kube = kube
        self.stuck_after = stuck_after
        self.interval = interval
        self.on_read = on_read
        """Called for each API request made (the metrics count them)."""
        self._readings: dict[PipelineKey, dict[str, _Reading]] = {}

    def seen(
        self,
        key: PipelineKey,
        jobs: Iterable[str],
        view: Mapping[str, Sequence[PodView]] | None = None,
    ) -> dict[str, Any]:
        """reconcile's keyword arguments for this pipeline, given its active Jobs: readings
        of other Jobs (finished, gone) are dropped. The pod view's pods (``view``) win over
        a targeted reading of the same Job: they are newer."""
        readings = self._readings.get(key)
        if readings:
            alive = set(jobs)
            for gone in [j for j in readings if j not in alive]:
                del readings[gone]
        readings = readings or {}
        return {
            "pods": {
                **{j: r.pods for j, r in readings.items() if r.pods is not None},
                **(view or {}),
            },
            "job_events": {j: r.events for j, r in readings.items() if r.events},
            "stuck_after": self.stuck_after,
        }

    async def decide(
        self,
        key: PipelineKey,
        jobs: Sequence[str],
        decide: Callable[..., Plan],
        view: Mapping[str, Sequence[PodView]] | None = None,
    ) -> Plan:
        """``decide(**seen)``; again with fresh readings when the plan asks for some."""
        plan = decide(**self.seen(key, jobs, view))
        if plan.diagnose and await self.read(key, plan.diagnose):
            plan = decide(**self.seen(key, jobs, view))
        return plan

    async def read(self, key: PipelineKey, jobs: Sequence[str]) -> bool:
        """Read the Jobs not read within ``interval``: whether anything was read."""
        ns = key[0]
        readings = self._readings.setdefault(key, {})
        now = time.monotonic()
        # A little slack: the plan's wake-up comes `interval` after the last look.
        stale = [
            j for j in jobs if j not in readings or now - readings[j].at >= self.interval * 0.8
        ]
        for job in stale:
            readings[job] = await self._read(ns, job, now, readings.get(job))
        return any(readings[j].pods is not None for j in stale)

    async def _read(self, ns: str, job: str, now: float, old: _Reading | None) -> _Reading:
        try:
            self.on_read()
            pods = tuple(await job_pods(self.kube, ns, job))
            events: tuple[JobEvent, ...] = ()
            if not [p for p in pods if not p.deleting]:
                self.on_read()
                events = tuple(await job_events(self.kube, ns, job))
        except Exception as e:  # the API server, RBAC, the network: keep what we had
            why = e.message if isinstance(e, ApiError) else repr(e)
            log.warning("reading the pods of stuck Job %s/%s: %s", ns, job, why)
            return _Reading(now, old.pods if old else None, old.events if old else ())
        return _Reading(now, pods, events)

    def forget(self, key: PipelineKey) -> None:
        self._readings.pop(key, None)
