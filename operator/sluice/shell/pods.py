"""The pods of Sluice's Jobs, as the reconciler reads them: a label-selected
list+watch per namespace (the Jobs' pod template carries
``app.kubernetes.io/managed-by=sluice``), kept as frozen
:class:`~sluice.core.pods.PodView` records (read once at ingest, as the Job index
does) and keyed by Job name. It is what makes ``reconcile(..., pods=...)`` cost
no API call: a step's pod that has succeeded hands off at once
(``sluice.core.podsuccess``), and the same records serve the results a step
wrote and the reason a step's pod is stuck.

Only pods that have succeeded are watched by default (:data:`SUCCEEDED`, a
field selector): a pod that leaves that state (deleted) leaves the view.

A pod maps to its pipeline by the pipeline's exact name on the pod template
(``sluice.dev/pipeline-name``); a pod of an older Job, without it, by its
job-name label through the Job index. A pod that newly succeeded wakes its
pipeline's worker as a completion (the hand-off clock starts then); its other
updates wake nothing (they are read at the next reconcile). Nothing
waits for this view: a Job absent from it is "nothing known of its pods", and
the Job's own conditions still move the step.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sluice.core.observe import JobView
from sluice.core.pods import PodView, observe_pod
from sluice.shell.jobs import SELECTOR, OnChange, PipelineKey
from sluice.shell.kube import Kube
from sluice.shell.listwatch import ListWatch

__all__ = ["PodIndex"]

SUCCEEDED = "status.phase=Succeeded"
"""The pods kept by default: those the reconciler acts on (a success hands off; its
termination message holds the step's results). Selected by the API server, so a
pod's other updates (scheduled, pulled, started: four or five a pod) cost the
operator nothing: watching every phase cost 41 % more CPU per task in the
benchmark (bench/README.md, 2026-12-02). ``fields=""`` keeps every phase (a stuck step's waiting
reason), at that cost; a pod not in the view is read on demand instead."""

JobKey = tuple[str, str]
"""(namespace, Job name)."""

_i = sys.intern


def _view(obj: Mapping[str, Any]) -> PodView | None:
    view = observe_pod(obj)
    if not view.job or not view.name:
        return None  # not a Job's pod
    return dataclasses.replace(
        view,
        name=_i(view.name),
        namespace=_i(view.namespace),
        job=_i(view.job),
        pipeline=_i(view.pipeline) if view.pipeline else None,
    )


class PodIndex(ListWatch):
    """Per namespace in use, one list+watch of the pods of Sluice's Jobs."""

    what = "pods"

    def __init__(
        self,
        kube: Kube,
        on_change: OnChange,
        pipeline_of: Callable[[str, str], str | None],
        idle_timeout: float = 70.0,
        fields: str = SUCCEEDED,
    ) -> None:
        super().__init__(
            lambda ns, sel, cont: kube.list_pods(ns, sel, continue_=cont, fields=fields),
            lambda ns, sel, rv, idle: kube.watch_pods(ns, sel, rv, idle, fields=fields),
            SELECTOR,
            idle_timeout,
        )
        self.on_change = on_change
        self.pipeline_of = pipeline_of
        """(namespace, Job name) -> its pipeline, for pods without the annotation."""
        self._records: dict[JobKey, dict[str, PodView]] = {}

    # ------------------------------------------------------------------ reading
    def pods(self, namespace: str, jobs: Sequence[JobView]) -> dict[str, tuple[PodView, ...]]:
        """The pods of these Jobs, by Job name (Jobs with none known are left out)."""
        out: dict[str, tuple[PodView, ...]] = {}
        for job in jobs:
            records = self._records.get((namespace, job.name))
            if records:
                out[job.name] = tuple(records.values())
        return out

    def _pipeline(self, view: PodView) -> PipelineKey | None:
        pipeline = view.pipeline or self.pipeline_of(view.namespace, view.job)
        return (view.namespace, pipeline) if pipeline else None

    # ------------------------------------------------------------------ the records
    def ingest(self, obj: Mapping[str, Any]) -> PodView | None:
        return _view(obj)

    def replace(self, namespace: str, records: list[PodView]) -> None:
        fresh: dict[JobKey, dict[str, PodView]] = {}
        for view in records:
            fresh.setdefault((namespace, view.job), {})[view.name] = view
        old = {k: v for k, v in self._records.items() if k[0] == namespace}
        for job_key in old:
            if job_key not in fresh:
                del self._records[job_key]
        self._records.update(fresh)
        woken: set[PipelineKey] = set()
        for views in [*old.values(), *fresh.values()]:
            for view in views.values():
                key = self._pipeline(view)
                if key is not None and key not in woken:
                    woken.add(key)
                    self.on_change(key, False)

    def apply(self, kind: str, obj: Mapping[str, Any]) -> None:
        view = _view(obj)
        if view is None:
            return
        job_key = (view.namespace, view.job)
        records = self._records.get(job_key)
        before = records.get(view.name) if records else None
        if kind == "DELETED":
            if records is not None:
                records.pop(view.name, None)
                if not records:
                    del self._records[job_key]
            return  # a pod gone says nothing new: no wake-up
        self._records.setdefault(job_key, {})[view.name] = view
        # Wake only for what the reconciler acts on at once: a pod that newly succeeded
        # (a completion: the hand-off clock starts here). The rest of a pod's updates
        # (scheduled, started, ...) are read at the pipeline's next reconcile.
        if view.succeeded and not (before is not None and before.succeeded):
            key = self._pipeline(view)
            if key is not None:
                self.on_change(key, True)

    def drop(self, namespace: str) -> None:
        for key in [k for k in self._records if k[0] == namespace]:
            del self._records[key]
