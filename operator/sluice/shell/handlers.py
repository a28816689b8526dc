"""kopf handlers: thin. They keep indexes of Jobs and Tasks and wake workers.

Nothing here decides anything: decisions are `sluice.core.reconcile`'s, and
the per-pipeline loop that calls it is `sluice.shell.controller`'s. kopf is
used only to watch (indexes and event handlers write nothing to the objects).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from sluice.api import GROUP, PIPELINE_PLURAL, TASK_PLURAL, VERSION
from sluice.core import naming
from sluice.metrics import Metrics
from sluice.shell.controller import Controller
from sluice.shell.kube import Kube, load_config
from sluice.shell.leader import LeaderElector

log = logging.getLogger(__name__)

_MANAGED = {naming.LABEL_MANAGED_BY: naming.MANAGED_BY}
_MANAGED_SELECTOR = f"{naming.LABEL_MANAGED_BY}={naming.MANAGED_BY}"
_KEEP_LABELS = (naming.LABEL_PIPELINE, naming.LABEL_TASK, naming.LABEL_RUN, naming.LABEL_ATTEMPT)


def _trim_job(body: Mapping[str, Any]) -> dict[str, Any]:
    """Keep only what the reconciler reads: a few hundred bytes per Job in memory."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    return {
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "labels": {k: labels[k] for k in _KEEP_LABELS if k in labels},
            "annotations": {k: v for k, v in annotations.items() if k.startswith("sluice.dev/")},
            "creationTimestamp": meta.get("creationTimestamp"),
            "deletionTimestamp": meta.get("deletionTimestamp"),
            "ownerReferences": [{"uid": o.get("uid")} for o in meta.get("ownerReferences") or []],
        },
        "status": {
            "completionTime": status.get("completionTime"),
            "conditions": [
                dict(c)
                for c in status.get("conditions") or []
                if c.get("type") in ("Complete", "Failed")
            ],
        },
    }


def _job_key(body: Mapping[str, Any]) -> tuple[str, str] | None:
    meta = body.get("metadata") or {}
    pipeline = (meta.get("annotations") or {}).get(naming.ANNOTATION_PIPELINE)
    return (meta.get("namespace", ""), pipeline) if pipeline else None


def _completed(body: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Complete" and c.get("status") == "True"
        for c in (body.get("status") or {}).get("conditions") or []
    )


class _NoEssence(kopf.AnnotationsDiffBaseStorage):
    """No diff base: Sluice has no change handlers (create/update/delete/field).

    kopf builds the "essence" of every object on every watch event -- a deep
    copy of the whole body, managedFields and status included -- to diff it for
    change handlers. Index and event handlers, the only kinds Sluice has
    (tests/unit/test_bench_invariants.py checks it), never read it; the copy
    was a tenth of the operator's CPU in the benchmarks (bench/README.md).
    """

    def build(
        self,
        *,
        body: kopf.Body,
        extra_fields: Iterable[Any] | None = None,
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Watches must never stall silently: the server closes them, and the client
    # gives up on a connection that stays quiet for too long.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.watching.inactivity_timeout = float(getattr(memo, "watch_timeout", 70.0))
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = 8
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # No runtime scanning of namespaces and CRDs unless namespace globs need it
    # (`--namespace 'team-*'`): the CRDs are installed before the operator, and
    # least-privilege RBAC grants neither; kopf would otherwise retry the refused
    # list calls with backoff (about a minute) before it starts watching.
    settings.scanning.disabled = not getattr(memo, "namespace_globs", False)
    # Only Sluice's Jobs, selected by the API server: without this kopf lists and
    # watches every Job in the watched namespaces (the cluster, by default) and
    # drops the others client-side, after decoding them.
    settings.watching.label_selectors["batch", "v1", "jobs"] = _MANAGED_SELECTOR
    settings.persistence.diffbase_storage = _NoEssence()
    metrics: Metrics = memo.metrics
    controller = Controller(
        Kube(load_config()),
        jobs=lambda ns, name: [],
        tasks=lambda ns: {},
        metrics=metrics,
    )
    memo.controller = controller
    elector: LeaderElector | None = getattr(memo, "elector", None)
    if elector is not None:
        # Act only while leading; on regaining the lease, look at everything again.
        loop = asyncio.get_running_loop()
        controller.may_act = lambda: elector.is_leader

        def regained() -> None:
            loop.call_soon_threadsafe(controller.wake_all)

        elector.keep_renewing(on_lost=lambda: None, on_regained=regained)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    controller: Controller | None = getattr(memo, "controller", None)
    if controller is not None:
        await controller.stop()


@kopf.index("batch", "v1", "jobs", labels=_MANAGED)
async def sluice_jobs(body: kopf.Body, **_: Any) -> dict[tuple[str, str], dict[str, Any]]:
    key = _job_key(body)
    return {key: _trim_job(body)} if key else {}


@kopf.index(GROUP, VERSION, TASK_PLURAL)
async def sluice_tasks(body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
    return {body.metadata.namespace or "": {"name": body.metadata.name, "spec": dict(body.spec)}}


@kopf.on.event("batch", "v1", "jobs", labels=_MANAGED)
async def job_event(body: kopf.Body, event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    key = _job_key(body)
    if key is not None:
        memo.controller.wake(key, completed=event["type"] != "DELETED" and _completed(body))


@kopf.on.event(GROUP, VERSION, TASK_PLURAL)
async def task_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo.controller.wake_namespace(body.metadata.namespace or "")


@kopf.on.event(GROUP, VERSION, PIPELINE_PLURAL)  # type: ignore[arg-type]  # index kwargs
async def pipeline_event(
    body: kopf.Body,
    event: kopf.RawEvent,
    memo: kopf.Memo,
    sluice_jobs: kopf.Index[tuple[str, str], dict[str, Any]],
    sluice_tasks: kopf.Index[str, dict[str, Any]],
    **_: Any,
) -> None:
    controller: Controller = memo.controller
    # The indexes are live views, filled completely before this handler first runs.
    controller.jobs = lambda ns, name: list(sluice_jobs.get((ns, name), []))
    controller.tasks = lambda ns: {t["name"]: t for t in sluice_tasks.get(ns, [])}
    controller.pipeline_event(event.get("type") or "", event["object"])
