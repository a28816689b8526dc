"""Sluice's Jobs, as the reconciler needs them: a label-selected list+watch per
namespace, kept in memory as small records and keyed by pipeline.

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
from typing import Any

from sluice.core import naming
from sluice.shell.kube import ApiError, Kube

__all__ = ["SELECTOR", "JobIndex", "job_key", "trim_job"]

log = logging.getLogger(__name__)

SELECTOR = f"{naming.LABEL_MANAGED_BY}={naming.MANAGED_BY}"
"""Only Sluice's Jobs, selected by the API server."""

PipelineKey = tuple[str, str]
OnChange = Callable[[PipelineKey, bool], None]
"""Called with (namespace, pipeline) and whether the Job is now complete."""

_KEEP_LABELS = (naming.LABEL_PIPELINE, naming.LABEL_TASK, naming.LABEL_RUN, naming.LABEL_ATTEMPT)
_KEEP_CONDITION = ("type", "status", "reason", "message", "lastTransitionTime")
_BACKOFF = (0.5, 1, 2, 5, 10, 30)
_i = sys.intern


def trim_job(body: Mapping[str, Any]) -> dict[str, Any]:
    """Only what the reconciler reads (a few hundred bytes), repeated strings shared."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    return {
        "metadata": {
            "name": meta.get("name"),
            "namespace": _i(meta.get("namespace") or ""),
            "labels": {k: _i(labels[k]) for k in _KEEP_LABELS if k in labels},
            "annotations": {
                _i(k): _i(v) if len(v) < 64 else v
                for k, v in annotations.items()
                if k.startswith("sluice.dev/")
            },
            "creationTimestamp": meta.get("creationTimestamp"),
            "deletionTimestamp": meta.get("deletionTimestamp"),
            "ownerReferences": [
                {"uid": _i(o.get("uid") or "")} for o in meta.get("ownerReferences") or []
            ],
        },
        "status": {
            "completionTime": status.get("completionTime"),
            "conditions": [
                {k: c[k] for k in _KEEP_CONDITION if k in c}
                for c in status.get("conditions") or []
                if c.get("type") in ("Complete", "Failed")
            ],
        },
    }


def job_key(body: Mapping[str, Any]) -> PipelineKey | None:
    """(namespace, pipeline) of a Sluice Job; None for a Job without the annotation."""
    meta = body.get("metadata") or {}
    pipeline = (meta.get("annotations") or {}).get(naming.ANNOTATION_PIPELINE)
    return (_i(meta.get("namespace") or ""), _i(pipeline)) if pipeline else None


def completed(body: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Complete" and c.get("status") == "True"
        for c in (body.get("status") or {}).get("conditions") or []
    )


class _Gone(Exception):
    """The watch's resourceVersion is too old: list again."""


class JobIndex:
    """Per namespace in use, one list+watch of Sluice's Jobs; records by pipeline."""

    def __init__(self, kube: Kube, on_change: OnChange, idle_timeout: float = 70.0) -> None:
        self.kube = kube
        self.on_change = on_change
        self.idle_timeout = idle_timeout
        self._records: dict[PipelineKey, dict[str, dict[str, Any]]] = {}
        self._synced: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.relists = 0

    # ------------------------------------------------------------------ reading
    def jobs(self, namespace: str, pipeline: str) -> list[dict[str, Any]]:
        return list(self._records.get((namespace, pipeline), {}).values())

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
                delay = _BACKOFF[min(errors, len(_BACKOFF) - 1)]
                errors += 1
                level = logging.WARNING if errors > 1 else logging.INFO
                log.log(level, "watching Jobs in %s: %r; again in %ss", namespace, e, delay)
                await asyncio.sleep(delay)

    async def _list(self, namespace: str) -> str:
        records: dict[PipelineKey, dict[str, dict[str, Any]]] = {}
        continue_: str | None = None
        while True:
            page = await self.kube.list_jobs(namespace, SELECTOR, continue_=continue_)
            for item in page.get("items") or []:
                key = job_key(item)
                if key is not None:
                    records.setdefault(key, {})[item["metadata"]["name"]] = trim_job(item)
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
        self.relists += 1
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
                if kind == "DELETED":
                    records = self._records.get(key)
                    if records is not None:
                        records.pop(name, None)
                        if not records:
                            del self._records[key]
                    self.on_change(key, False)
                else:
                    self._records.setdefault(key, {})[name] = trim_job(obj)
                    self.on_change(key, completed(obj))
        except ApiError as e:
            if e.status == 410:
                raise _Gone from e
            raise
        except TimeoutError:
            pass  # quiet for idle_timeout: reconnect from where we are
        return rv
