"""kopf handlers: thin. They keep an index of Tasks and wake workers.

Nothing here decides anything: decisions are `sluice.core.reconcile`'s, and
the per-pipeline loop that calls it is `sluice.shell.controller`'s. kopf is
used only to watch Pipelines and Tasks (indexes and event handlers write
nothing to the objects); Sluice's Jobs are watched by `sluice.shell.jobs`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable
from typing import Any

import kopf

from sluice.api import GROUP, PIPELINE_PLURAL, TASK_PLURAL, VERSION
from sluice.metrics import Metrics
from sluice.shell.controller import STATUS_WRITERS, Controller
from sluice.shell.kube import Kube, load_config
from sluice.shell.leader import LeaderElector

log = logging.getLogger(__name__)


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


def _status_interval(memo: kopf.Memo) -> float:
    """Seconds between two status writes of a pipeline's progress (Controller.status_interval)."""
    value = getattr(memo, "status_interval", None)
    if value is None:
        value = os.environ.get("SLUICE_STATUS_INTERVAL")
    return max(float(value), 0.0) if value is not None else 1.0


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
    settings.persistence.diffbase_storage = _NoEssence()
    metrics: Metrics = memo.metrics
    # Jobs are not kopf's: the controller watches them itself, label-selected,
    # per namespace in use (sluice.shell.jobs says why).
    controller = Controller(
        Kube(load_config()),
        tasks=lambda ns: {},
        metrics=metrics,
        watch_timeout=settings.watching.inactivity_timeout,
        status_interval=_status_interval(memo),
        status_writers=getattr(memo, "status_writers", STATUS_WRITERS),
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


@kopf.index(GROUP, VERSION, TASK_PLURAL)
async def sluice_tasks(body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
    return {body.metadata.namespace or "": {"name": body.metadata.name, "spec": dict(body.spec)}}


@kopf.on.event(GROUP, VERSION, TASK_PLURAL)
async def task_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo.controller.wake_namespace(body.metadata.namespace or "")


@kopf.on.event(GROUP, VERSION, PIPELINE_PLURAL)  # type: ignore[arg-type]  # index kwargs
async def pipeline_event(
    body: kopf.Body,
    event: kopf.RawEvent,
    memo: kopf.Memo,
    sluice_tasks: kopf.Index[str, dict[str, Any]],
    **_: Any,
) -> None:
    controller: Controller = memo.controller
    # The index is a live view, filled completely before this handler first runs.
    controller.tasks = lambda ns: {t["name"]: t for t in sluice_tasks.get(ns, [])}
    controller.pipeline_event(event.get("type") or "", event["object"])
