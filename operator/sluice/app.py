"""The composition root: one place that builds the operator from its `Settings`.

One process, one event loop, one kopf instance, one API client of Sluice's own:

* always, on every replica: kopf's watches of Pipelines and Tasks (and its Task
  index), the Job watch, ``/healthz`` (kopf's liveness endpoint), ``/metrics``
  and the admission webhook (kopf's server, same registry, same loop);
* only while this replica holds the Lease: the controller's workers act (create
  and delete Jobs, write statuses, post Events). The elector is an asyncio task
  beside kopf; it starts and stops the controller through callbacks. A standby
  therefore has warm caches: failover is "the lease expires, the workers act".

The configuration is loaded once (the official client's loader: in-cluster
service account or kubeconfig, exec plugins and token refresh); Sluice's own
calls go through :class:`~sluice.shell.kube.Kube`, and kopf logs in from the
same configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

import kopf
from aiohttp import web
from kubernetes.client import Configuration
from kubernetes.config import ConfigException
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from sluice.metrics import Metrics
from sluice.settings import Settings
from sluice.shell import admission, handlers, scope
from sluice.shell.controller import Controller
from sluice.shell.kube import Kube
from sluice.shell.kubeconfig import load_config
from sluice.shell.leader import LeaseElector, default_lease_namespace, new_identity

__all__ = ["App", "StartupError", "run"]

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The operator cannot start, for a reason its user can fix (one line, no traceback)."""


def _check_port(address: str, port: int, what: str) -> None:
    """Refuse to start when ``port`` cannot be bound (kopf would fail later, deep inside)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError as e:
            raise StartupError(f"cannot listen on {what} port {port}: {e.strerror}") from e


class App:
    """Everything the operator runs, built and wired; `run()` runs it until a signal."""

    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry = REGISTRY,
        cfg: Configuration | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        if cfg is None:
            try:
                cfg = load_config()
            except ConfigException as e:
                raise StartupError(
                    f"no Kubernetes configuration (not in a pod, and no usable kubeconfig): {e}"
                ) from e
        self.cfg = cfg
        self.kube = Kube(self.cfg)
        self.metrics = Metrics(registry)
        self.tasks = handlers.TaskIndex()
        self.controller = Controller(
            self.kube,
            tasks=self.tasks.of,
            metrics=self.metrics,
            watch_timeout=settings.watch_timeout,
            status_interval=settings.status_interval,
            status_writers=settings.status_writers,
            stuck_after=settings.stuck_after,
            max_matrix=settings.max_matrix,
        )
        self.kopf_registry = kopf.OperatorRegistry()
        self.kopf_settings = handlers.operator_settings(settings)
        handlers.register(self.kopf_registry, self.controller, self.tasks, self.cfg)
        self.webhook = admission.install(
            admission.AdmissionConfig(
                mode=settings.admission,
                namespaces=settings.namespaces,
                port=settings.webhook_port,
                address=settings.webhook_address,
                cert_file=settings.webhook_cert_file,
                key_file=settings.webhook_key_file,
                ca_file=settings.webhook_ca_file,
                max_matrix=settings.max_matrix,
            ),
            self.kopf_registry,
            self.kopf_settings,
            self.kube,
            self.tasks.known,
        )
        self.elector: LeaseElector | None = None
        if settings.leader_elect:
            self.elector = LeaseElector(
                self.kube,
                namespace=settings.leader_election_namespace or default_lease_namespace(),
                name=settings.leader_election_id
                or scope.scoped_name("sluice-operator", settings.namespaces),
                identity=new_identity(),
                lease_duration=settings.lease_duration,
                renew_deadline=settings.renew_deadline,
                retry_period=settings.retry_period,
                on_started=lambda: self.controller.lead(True),
                on_stopped=lambda: self.controller.lead(False),
            )

    async def run(self) -> None:
        s = self.settings
        if s.health_port:
            _check_port("0.0.0.0", s.health_port, "the health")
        if s.metrics_port:
            _check_port(s.metrics_address, s.metrics_port, "the metrics")
        metrics = await self._serve_metrics() if s.metrics_port else None
        elector: asyncio.Task[None] | None = None
        try:
            if self.elector is not None:
                elector = asyncio.create_task(self.elector.run(), name="leader election")
            else:
                self.controller.lead(True)
            liveness = f"http://0.0.0.0:{s.health_port}/healthz" if s.health_port else None
            await kopf.operator(
                registry=self.kopf_registry,
                settings=self.kopf_settings,
                clusterwide=not s.namespaces,
                namespaces=list(s.namespaces),
                standalone=True,
                memo=kopf.Memo(),
                liveness_endpoint=liveness,
            )
        finally:
            if elector is not None:
                elector.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await elector
            await self.controller.stop()  # writes what is pending while still leading
            if self.elector is not None:
                await self.elector.release()
            if self.webhook is not None:
                await self.webhook.close()  # on every clean stop, leader or not
            if metrics is not None:
                await metrics.cleanup()
            await self.kube.close()

    async def _serve_metrics(self) -> web.AppRunner:
        registry = self.registry

        async def scrape(request: web.Request) -> web.Response:
            return web.Response(
                body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

        app = web.Application()
        app.router.add_get("/metrics", scrape)
        app.router.add_get("/", scrape)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.settings.metrics_address, self.settings.metrics_port).start()
        return runner


def run(settings: Settings, before_loop: Callable[[], None] = lambda: None) -> int:
    """Build the app, then run it on a new event loop until SIGTERM or SIGINT."""
    app = App(settings)
    before_loop()
    asyncio.run(app.run())
    return 0
