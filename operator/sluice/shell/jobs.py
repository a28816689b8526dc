"""Sluice's Jobs, as the reconciler needs them: a label-selected list+watch per
namespace, kept in memory as the reconciler's own view of a Job (frozen
`JobView`s, read once at ingest by `observe_job`) and keyed by pipeline.

Why not a kopf index: kopf runs every watch event of every object through
its whole machinery (a per-object worker task, per-object memory kept until
the object is deleted, loggers, cause detection, handler invocation), and
Jobs are most of the events and most of the objects Sluice sees: two events
per task, one object per attempt. The benchmarks (bench/README.md) found
that machinery to be the largest cost per task in CPU and in memory. Here an
event costs a JSON decode, a dict update and a wake-up.

The guarantee kopf's index gave is kept: a pipeline's worker does not
reconcile before the initial list of its namespace's Jobs is complete
(:meth:`JobIndex.synced`), so a restarted operator knows every Job that
exists before it decides anything. A watch that breaks resumes from its
last resourceVersion; one that is too old (410 Gone) lists again and swaps
the namespace's records at once, never leaving them empty in between.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from sluice.core import naming
from sluice.core.reconcile import JobView, observe_job
from sluice.shell.backoff import BACKOFF
from sluice.shell.kube import ApiError, Kube

__all__ = ["SELECTOR", "JobIndex", "JobRecord", "PipelineKey", "job_key", "record"]

log = logging.getLogger(__name__)

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
    owners = frozenset(_i(o.get("uid") or "") for o in meta.get("ownerReferences") or [])
    return JobRecord(owners, view)


def job_key(body: Mapping[str, Any]) -> PipelineKey | None:
    """(namespace, pipeline) of a Sluice Job; None for a Job without the annotation."""
    meta = body.get("metadata") or {}
    pipeline = (meta.get("annotations") or {}).get(naming.ANNOTATION_PIPELINE)
    return (_i(meta.get("namespace") or ""), _i(pipeline)) if pipeline else None


class _Gone(Exception):
    """The watch's resourceVersion is too old: list again."""


class JobIndex:
    """Per namespace in use, one list+watch of Sluice's Jobs; records by pipeline."""

    def __init__(self, kube: Kube, on_change: OnChange, idle_timeout: float = 70.0) -> None:
        self.kube = kube
        self.on_change = on_change
        self.idle_timeout = idle_timeout
        self._records: dict[PipelineKey, dict[str, JobRecord]] = {}
        self._synced: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.on_relist: Callable[[], None] = lambda: None
        """Called after every complete list (the first one and each after a 410)."""

    # ------------------------------------------------------------------ reading
    def jobs(self, namespace: str, pipeline: str, owner: str | None = None) -> list[JobView]:
        """The pipeline's Jobs; with ``owner``, only those that Pipeline UID owns."""
        records = self._records.get((namespace, pipeline), {}).values()
        return [r.view for r in records if owner is None or owner in r.owners]

    def synced(self, namespace: str) -> asyncio.Event:
        """Set once the namespace's Jobs are all known; watching starts on first use."""
        if namespace not in self._tasks:
            self._synced[namespace] = asyncio.Event()
            self._tasks[namespace] = asyncio.create_task(
                self._run(namespace), name=f"jobs in {namespace}", context=contextvars.Context()
            )
        return self._synced[namespace]

    def release(self, namespace: str) -> None:
        """Stop watching a namespace no pipeline is in any more."""
        task = self._tasks.pop(namespace, None)
        if task is not None:
            task.cancel()
        self._synced.pop(namespace, None)
        for key in [k for k in self._records if k[0] == namespace]:
            del self._records[key]

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    # ------------------------------------------------------------------ watching
    async def _run(self, namespace: str) -> None:
        rv: str | None = None
        errors = 0
        while True:
            try:
                if rv is None:
                    rv = await self._list(namespace)
                    self._synced[namespace].set()
                rv = await self._watch(namespace, rv)
                errors = 0
            except asyncio.CancelledError:
                raise
            except _Gone:
                rv = None  # too old: list again, at once
            except Exception as e:  # network, server, or anything: resume after a pause
                delay = BACKOFF.delay(errors)
                errors += 1
                level = logging.WARNING if errors > 1 else logging.INFO
                log.log(level, "watching Jobs in %s: %r; again in %ss", namespace, e, delay)
                await asyncio.sleep(delay)

    async def _list(self, namespace: str) -> str:
        records: dict[PipelineKey, dict[str, JobRecord]] = {}
        continue_: str | None = None
        while True:
            page = await self.kube.list_jobs(namespace, SELECTOR, continue_=continue_)
            for item in page.get("items") or []:
                key, rec = job_key(item), record(item)
                if key is not None and rec is not None:
                    records.setdefault(key, {})[rec.view.name] = rec
            meta = page.get("metadata") or {}
            continue_ = meta.get("continue")
            if not continue_:
                rv: str = meta.get("resourceVersion") or ""
                break
        # Swap the namespace's records at once, and wake every pipeline whose Jobs
        # may differ from what it saw (a relist follows a gap in the events).
        old = [k for k in self._records if k[0] == namespace]
        for key in old:
            if key not in records:
                del self._records[key]
        self._records.update(records)
        self.on_relist()
        for key in set(old) | set(records):
            self.on_change(key, False)
        return rv

    async def _watch(self, namespace: str, rv: str) -> str:
        try:
            async for event in self.kube.watch_jobs(namespace, SELECTOR, rv, self.idle_timeout):
                obj = event.get("object") or {}
                rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                kind = event.get("type")
                if kind == "BOOKMARK":
                    continue
                key = job_key(obj)
                if key is None:
                    continue
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
        except ApiError as e:
            if e.status == 410:
                raise _Gone from e
            raise
        except TimeoutError:
            pass  # quiet for idle_timeout: reconnect from where we are
        return rv
