"""Sluice's Jobs, as the reconciler needs them: a label-selected list+watch per
namespace, kept in memory as the reconciler's own view of a Job (frozen
`JobView`s, read once at ingest by `observe_job`) and keyed by pipeline.

Why not a kopf index: see shell/listwatch.py, the list+watch loop this shares
with the pod view (Jobs are two events per task, one object per attempt).

The guarantee kopf's index gave is kept: a pipeline's worker does not
reconcile before the initial list of its namespace's Jobs is complete
(:meth:`JobIndex.synced`), so a restarted operator knows every Job that
exists before it decides anything. A watch that breaks resumes from its
last resourceVersion; one that is too old (410 Gone) lists again and swaps
the namespace's records at once, never leaving them empty in between.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from sluice.core import naming
from sluice.core.reconcile import JobView, observe_job
from sluice.shell.kube import Kube
from sluice.shell.listwatch import ListWatch

__all__ = ["SELECTOR", "JobIndex", "JobRecord", "PipelineKey", "job_key", "record"]

SELECTOR = f"{naming.LABEL_MANAGED_BY}={naming.MANAGED_BY}"
"""Only Sluice's Jobs, selected by the API server."""

PipelineKey = tuple[str, str]
"""(namespace, name) of a Pipeline: how the shell keys everything per pipeline."""

OnChange = Callable[[PipelineKey, bool], None]
"""Called with (namespace, pipeline) and whether the Job is now complete."""

_i = sys.intern


class JobRecord(NamedTuple):
    """One Job as the index keeps it: the UIDs of its owners and the reconciler's view."""

    owners: frozenset[str]
    view: JobView


def record(body: Mapping[str, Any]) -> JobRecord | None:
    """Read a Job once, at ingest: None when it is not one of Sluice's."""
    view = observe_job(body)
    if view is None:
        return None
    meta = body.get("metadata") or {}
    owners = _owners(tuple(o.get("uid") or "" for o in meta.get("ownerReferences") or []))
    return JobRecord(owners, view)


@functools.lru_cache(maxsize=8192)
def _owners(uids: tuple[str, ...]) -> frozenset[str]:
    """One frozenset for all the Jobs of one Pipeline (about 200 bytes a Job otherwise)."""
    return frozenset(_i(u) for u in uids)


def job_key(body: Mapping[str, Any]) -> PipelineKey | None:
    """(namespace, pipeline) of a Sluice Job; None for a Job without the annotation."""
    meta = body.get("metadata") or {}
    pipeline = (meta.get("annotations") or {}).get(naming.ANNOTATION_PIPELINE)
    return (_i(meta.get("namespace") or ""), _i(pipeline)) if pipeline else None


class JobIndex(ListWatch):
    """Per namespace in use, one list+watch of Sluice's Jobs; records by pipeline."""

    what = "Jobs"

    def __init__(self, kube: Kube, on_change: OnChange, idle_timeout: float = 70.0) -> None:
        super().__init__(
            lambda ns, sel, cont: kube.list_jobs(ns, sel, continue_=cont),
            lambda ns, sel, rv, idle: kube.watch_jobs(ns, sel, rv, idle),
            SELECTOR,
            idle_timeout,
        )
        self.kube = kube
        self.on_change = on_change
        self._records: dict[PipelineKey, dict[str, JobRecord]] = {}

    # ------------------------------------------------------------------ reading
    def jobs(self, namespace: str, pipeline: str, owner: str | None = None) -> list[JobView]:
        """The pipeline's Jobs; with ``owner``, only those that Pipeline UID owns."""
        records = self._records.get((namespace, pipeline), {}).values()
        return [r.view for r in records if owner is None or owner in r.owners]

    def pipeline_of(self, namespace: str, job: str) -> str | None:
        """The pipeline of one of the namespace's Jobs, by its name (a scan: for the
        pods of Jobs made before pods carried their pipeline's name)."""
        for (ns, pipeline), records in self._records.items():
            if ns == namespace and job in records:
                return pipeline
        return None

    # ------------------------------------------------------------------ the records
    def ingest(self, obj: Mapping[str, Any]) -> tuple[PipelineKey, JobRecord] | None:
        key, rec = job_key(obj), record(obj)
        return (key, rec) if key is not None and rec is not None else None

    def replace(self, namespace: str, records: list[tuple[PipelineKey, JobRecord]]) -> None:
        fresh: dict[PipelineKey, dict[str, JobRecord]] = {}
        for key, rec in records:
            fresh.setdefault(key, {})[rec.view.name] = rec
        # Swap the namespace's records at once, and wake every pipeline whose Jobs
        # may differ from what it saw (a relist follows a gap in the events).
        old = [k for k in self._records if k[0] == namespace]
        for key in old:
            if key not in fresh:
                del self._records[key]
        self._records.update(fresh)
        for key in set(old) | set(fresh):
            self.on_change(key, False)

    def apply(self, kind: str, obj: Mapping[str, Any]) -> None:
        key = job_key(obj)
        if key is None:
            return
        name = obj["metadata"]["name"]
        rec = None if kind == "DELETED" else record(obj)
        if rec is None:  # deleted, or not one of ours any more
            records = self._records.get(key)
            if records is not None:
                records.pop(name, None)
                if not records:
                    del self._records[key]
            self.on_change(key, False)
        else:
            self._records.setdefault(key, {})[name] = rec
            self.on_change(key, rec.view.state == "Succeeded")

    def drop(self, namespace: str) -> None:
        for key in [k for k in self._records if k[0] == namespace]:
            del self._records[key]
