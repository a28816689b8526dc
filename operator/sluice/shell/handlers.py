"""kopf handlers: thin. They keep an index of Tasks and forward events.

Nothing here decides anything: decisions are `sluice.core.reconcile`'s, and
the per-pipeline loop that calls it is `sluice.shell.controller`'s. kopf is
used to watch Pipelines and Tasks (indexes and event handlers write nothing to
the objects) and to serve the webhook (`sluice.shell.admission`); Sluice's
Jobs are watched by `sluice.shell.jobs`. Everything is registered on the
registry the composition root (`sluice.app`) gives: nothing at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import kopf
from kubernetes import client

from sluice.api import GROUP, PIPELINE_PLURAL, TASK_PLURAL, VERSION
from sluice.settings import Settings
from sluice.shell import scope
from sluice.shell.controller import Controller

__all__ = ["TASK_INDEX", "TaskIndex", "connection_info", "operator_settings", "register"]

log = logging.getLogger(__name__)

TASK_INDEX = "sluice_tasks"
"""The id of kopf's Task index, and the keyword its handlers receive it by."""


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


class TaskIndex:
    """kopf's index of Tasks by namespace, bound once at startup: one lookup for
    the controller and the webhook."""

    def __init__(self) -> None:
        self._index: kopf.Index[str, dict[str, Any]] | None = None

    def bind(self, index: kopf.Index[str, dict[str, Any]]) -> None:
        self._index = index

    def of(self, namespace: str) -> dict[str, Mapping[str, Any]]:
        """The namespace's Tasks by name ({"name", "spec"})."""
        if self._index is None:
            return {}
        return {t["name"]: t for t in self._index.get(namespace, [])}

    def known(self, namespace: str) -> Mapping[str, Mapping[str, Any]] | None:
        """As `of`, or None before the index exists (the webhook then judges no taskRef)."""
        return None if self._index is None else self.of(namespace)


def operator_settings(settings: Settings) -> kopf.OperatorSettings:
    """kopf's settings for Sluice (the webhook adds its server: sluice.shell.admission)."""
    s = kopf.OperatorSettings()
    # Watches must never stall silently: the server closes them, and the client
    # gives up on a connection that stays quiet for too long.
    s.watching.server_timeout = 300
    s.watching.client_timeout = 330
    s.watching.connect_timeout = 10
    s.watching.inactivity_timeout = settings.watch_timeout
    s.posting.level = logging.WARNING
    # No runtime scanning of namespaces and CRDs unless namespace globs need it
    # (`--namespace 'team-*'`): the CRDs are installed before the operator, and
    # least-privilege RBAC grants neither; kopf would otherwise retry the refused
    # list calls with backoff (about a minute) before it starts watching.
    s.scanning.disabled = not scope.has_globs(settings.namespaces)
    s.persistence.diffbase_storage = _NoEssence()
    s.peering.standalone = True  # one actor is guaranteed by the Lease, not kopf peering
    return s


def connection_info(cfg: client.Configuration) -> kopf.ConnectionInfo:
    """kopf's credentials from the configuration Sluice loaded (once) for itself."""
    header = cfg.get_api_key_with_prefix("BearerToken", alias="authorization")
    scheme, _, token = (header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        username=cfg.username or None,
        password=cfg.password or None,
        scheme=scheme or None,
        token=token or None,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


def register(
    registry: kopf.OperatorRegistry,
    controller: Controller,
    tasks: TaskIndex,
    cfg: client.Configuration,
) -> None:
    """Sluice's handlers on ``registry``: login, the Task index, and event forwarding."""

    def login(**_: Any) -> kopf.ConnectionInfo:
        # Called again by kopf on a 401: the configuration's hook re-reads the token.
        return connection_info(cfg)

    async def bind(**kwargs: Any) -> None:
        tasks.bind(kwargs[TASK_INDEX])

    async def index_task(body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
        meta = body.metadata
        return {meta.namespace or "": {"name": meta.name, "spec": dict(body.spec)}}

    async def task_event(body: kopf.Body, **_: Any) -> None:
        controller.wake_namespace(body.metadata.namespace or "")

    async def pipeline_event(event: kopf.RawEvent, **_: Any) -> None:
        controller.pipeline_event(event.get("type") or "", event["object"])

    kopf.on.login(registry=registry, id="sluice_login")(login)
    kopf.on.startup(registry=registry, id="sluice_bind_tasks")(bind)
    kopf.index(GROUP, VERSION, TASK_PLURAL, registry=registry, id=TASK_INDEX)(index_task)
    kopf.on.event(GROUP, VERSION, TASK_PLURAL, registry=registry, id="task_event")(task_event)
    kopf.on.event(GROUP, VERSION, PIPELINE_PLURAL, registry=registry, id="pipeline_event")(
        pipeline_event  # type: ignore[arg-type]
    )
