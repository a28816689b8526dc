"""The validating admission webhook: a bad Pipeline or Task is refused at ``kubectl apply``.

The checks are ``sluice.core.validation``'s; this module only serves them. kopf's
``@kopf.on.validate`` handlers answer the API server's AdmissionReviews, on a
``kopf.WebhookServer``, in the operator's one kopf instance (same registry, same
event loop). Every replica answers reviews, a standby one as well as the leader,
since validating needs no leadership (only the controller waits for the Lease). So
a Service in front of several replicas (readiness: the webhook port) never routes a
review to a replica that does not listen, and a rolling update never waits for a
standby to lead. The Tasks a Pipeline refers to are read from the operator's own
index of Tasks (kopf's), not listed per review. ``sluice run --admission MODE``
picks how it is reached:

``off`` (the default)
    No webhook. The CRD schema and its CEL rules still refuse what they can at
    apply time, and the operator fails whatever else is wrong (phase ``Failed``,
    reason ``InvalidSpec``, an Event) with the message the webhook would have given.

``local`` (``make dev``: an operator outside the cluster, next to its API server)
    Serves HTTPS on 127.0.0.1 (any free port unless ``--webhook-port``) with a
    certificate authority it generates at start (the ``cryptography`` package;
    kopf's own self-signed generation needs oscrypto, which cannot find libcrypto
    on some systems), and registers a ValidatingWebhookConfiguration pointing at
    it, removed again on every clean stop (leader or standby). Its ``namespaceSelector`` (on the
    ``kubernetes.io/metadata.name`` label) names the watched namespaces; when
    all namespaces are watched it only leaves out ``kube-system``, and with glob
    patterns (``--namespace 'team-*'``), which a label selector cannot express,
    the handlers themselves let requests from unwatched namespaces through.
    Needs RBAC on ``validatingwebhookconfigurations`` (get, create, update, delete).

``cluster`` (the Helm chart)
    Serves HTTPS on 0.0.0.0:9443 with the certificate and key from files
    (``--webhook-cert-file``/``--webhook-key-file``, e.g. a mounted Secret from
    cert-manager or one the chart generated). kopf re-reads the files every
    minute and restarts the server when they change, so a renewed certificate
    is picked up without a restart. The chart owns the webhook configuration
    (a Service in front of the pods; the CA bundle from the chart or injected by
    cert-manager); the operator needs no RBAC for it.

failurePolicy: Ignore
    A webhook that is down (operator stopped, crashed, not yet ready, a
    configuration left behind by a ``kill -9``) must never lock users out of
    their own Pipelines for good, nor block ``kubectl delete`` of a namespace.
    With ``Ignore`` the API server admits the object when the webhook cannot
    answer, and the safety net is the operator: it runs the same checks on
    every reconcile, so an invalid pipeline that got through is marked
    ``Failed`` with the very message the webhook would have refused it with,
    and never affects other pipelines. (``Fail`` would buy nothing but outages:
    the objects would be refused with "failed calling webhook" instead.)

What is refused
    A Pipeline only for what is wrong in the Pipeline itself. What depends on
    Task objects (a ``taskRef`` to a Task not applied yet, a parameter a Task
    wants but nothing sets) may legitimately change or come later, since
    ``kubectl apply -f dir/`` applies files in alphabetical order, so those
    are warnings at apply time (``kubectl`` prints them) and errors for the
    operator until they are fixed. A Task is refused for what is wrong in it.
    Only CREATE and UPDATE are checked, and an UPDATE that leaves the spec
    alone (annotations such as ``sluice.dev/retry``, labels, finalizers, a
    deletion in progress) is always admitted: an object that predates the
    webhook can always be annotated, fixed or deleted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import kopf

from sluice.api import GROUP, PIPELINE_PLURAL, TASK_PLURAL, VERSION
from sluice.core import validation
from sluice.core.matrix import DEFAULT_MAX_MATRIX
from sluice.shell import scope
from sluice.shell.certs import CertificateFiles, make_certificates
from sluice.shell.kube import Kube
from sluice.shell.registration import (
    CLUSTER_PORT,
    FAILURE_POLICY,
    PIPELINE_PATH,
    PIPELINE_WEBHOOK,
    TASK_PATH,
    TASK_WEBHOOK,
    TIMEOUT_SECONDS,
    Registrar,
    local_configuration_name,
    namespace_selector,
    webhook_configuration,
)

__all__ = [
    "CLUSTER_PORT",
    "FAILURE_POLICY",
    "PIPELINE_PATH",
    "PIPELINE_WEBHOOK",
    "TASK_PATH",
    "TASK_WEBHOOK",
    "TIMEOUT_SECONDS",
    "AdmissionConfig",
    "CertificateFiles",
    "Registrar",
    "TasksOf",
    "Webhook",
    "install",
    "local_configuration_name",
    "make_certificates",
    "namespace_selector",
    "watched",
    "webhook_configuration",
]

log = logging.getLogger(__name__)

Mode = Literal["off", "local", "cluster"]

watched = scope.watched


@dataclass(frozen=True)
class AdmissionConfig:
    """What ``sluice run --admission ...`` asked for."""

    mode: Mode
    namespaces: Sequence[str] = ()
    """The watched namespace patterns (kopf's syntax); empty for all namespaces."""
    port: int | None = None
    address: str | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None
    max_matrix: int = DEFAULT_MAX_MATRIX
    """Combinations one matrixed step may have (``sluice run --max-matrix``)."""


# ----------------------------------------------------------------------------- handlers


def _spec_unchanged(operation: str | None, body: Mapping[str, Any], old: Any) -> bool:
    return operation == "UPDATE" and old is not None and old.get("spec") == body.get("spec")


def _size(body: Mapping[str, Any]) -> int:
    return len(json.dumps(dict(body), separators=(",", ":"), default=str).encode())


TasksOf = Callable[[str], Mapping[str, Mapping[str, Any]] | None]
"""The Task objects of a namespace by name (``{"spec": ...}``), or None if unknown."""


def _no_tasks(namespace: str) -> None:
    return None


def _uses_task_refs(spec: Any) -> bool:
    if not isinstance(spec, Mapping):
        return False
    steps = [
        t for key in ("tasks", "finally") if isinstance(spec.get(key), list) for t in spec[key]
    ]
    return any(isinstance(t, Mapping) and "taskRef" in t for t in steps)


@dataclass
class _Handlers:
    namespaces: Sequence[str]
    tasks_of: TasksOf = _no_tasks
    max_matrix: int = DEFAULT_MAX_MATRIX
    refused: dict[str, int] = field(default_factory=lambda: {"pipeline": 0, "task": 0})

    def pipeline(
        self,
        body: kopf.Body,
        old: kopf.Body | None,
        operation: str | None,
        warnings: list[str],
        **_: Any,
    ) -> None:
        meta = body.get("metadata") or {}
        namespace = meta.get("namespace")
        if (
            not watched(namespace, self.namespaces)
            or meta.get("deletionTimestamp")
            or _spec_unchanged(operation, body, old)
        ):
            return
        spec = body.get("spec")
        report = validation.check_pipeline(
            spec,
            name=meta.get("name") or None,  # None with generateName: no Job name check
            tasks=self.tasks_of(namespace or "") if _uses_task_refs(spec) else {},
            size=_size(body),
            max_matrix=self.max_matrix,
        )
        self._answer("pipeline", meta, report, warnings)

    def task(
        self,
        body: kopf.Body,
        old: kopf.Body | None,
        operation: str | None,
        warnings: list[str],
        **_: Any,
    ) -> None:
        meta = body.get("metadata") or {}
        if (
            not watched(meta.get("namespace"), self.namespaces)
            or meta.get("deletionTimestamp")
            or _spec_unchanged(operation, body, old)
        ):
            return
        report = validation.check_task(body.get("spec"), size=_size(body))
        self._answer("task", meta, report, warnings)

    def _answer(
        self,
        kind: str,
        meta: Mapping[str, Any],
        report: validation.Report,
        warnings: list[str],
    ) -> None:
        warnings.extend(report.advice())
        refusal = report.refusal()
        if refusal is not None:
            self.refused[kind] += 1
            log.info("refused %s %s/%s: %s", kind, meta.get("namespace"), meta.get("name"), refusal)
            raise kopf.AdmissionError(refusal, code=422)


class _LocalWebhookServer(kopf.WebhookServer):
    """kopf's server, registering its configuration once it serves (removal: Webhook.close)."""

    def __init__(self, registrar: Registrar, ca_bundle: bytes, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.registrar = registrar
        self.ca_bundle = ca_bundle

    async def __call__(self, fn: Any) -> AsyncIterator[Any]:
        async for client_config in super().__call__(fn):
            await self.registrar.register(client_config.get("url") or "", self.ca_bundle)
            yield client_config


# ----------------------------------------------------------------------------- wiring


class _QuietRefusals(logging.Filter):
    """kopf logs every refusal as an ERROR of the object; ours are logged at INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not (
            msg.startswith(("Webhook 'validate-pipeline'", "Webhook 'validate-task'"))
            and "failed permanently" in msg
        )


@dataclass
class Webhook:
    """The webhook as installed on the operator's kopf registry; ``close`` cleans up."""

    config: AdmissionConfig
    handlers: _Handlers
    server: kopf.WebhookServer
    registrar: Registrar | None = None
    certificates: CertificateFiles | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    async def close(self) -> None:
        """Remove a local registration (idempotent), whether or not this replica led."""
        if self.registrar is not None:
            await self.registrar.unregister()
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.cleanup()
            self._tmp = None


def install(
    config: AdmissionConfig,
    registry: kopf.OperatorRegistry,
    settings: kopf.OperatorSettings,
    kube: Kube | None,
    tasks_of: TasksOf = _no_tasks,
) -> Webhook | None:
    """Serve the webhook for ``config.mode`` from the operator's kopf instance (None for
    ``off``): its handlers go on ``registry``, its server on ``settings``."""
    if config.mode == "off":
        return None
    if config.mode == "cluster" and (config.cert_file is None or config.key_file is None):
        raise ValueError("--admission cluster needs --webhook-cert-file and --webhook-key-file")
    logging.getLogger("kopf.objects").addFilter(_QuietRefusals())
    handlers = _Handlers(list(config.namespaces), tasks_of, config.max_matrix)
    registrar = certs = tmp = None
    if config.mode == "local":
        if kube is None:
            raise ValueError("--admission local registers itself: it needs the API client")
        tmp = tempfile.TemporaryDirectory(prefix="sluice-admission-")
        certs = make_certificates(Path(tmp.name))
        registrar = Registrar(kube, local_configuration_name(config.namespaces), config.namespaces)
        server: kopf.WebhookServer = _LocalWebhookServer(
            registrar,
            certs.ca_bundle,
            addr=config.address or "127.0.0.1",
            port=config.port or None,
            host=config.address or "127.0.0.1",
            cafile=certs.ca,
            certfile=certs.cert,
            pkeyfile=certs.key,
        )
    else:
        server = kopf.WebhookServer(
            addr=config.address or "0.0.0.0",
            port=config.port or CLUSTER_PORT,
            cafile=config.ca_file,
            certfile=config.cert_file,
            pkeyfile=config.key_file,
        )
    settings.admission.server = server
    settings.admission.managed = None  # local: the Registrar; cluster: the chart
    for plural, path, fn in (
        (PIPELINE_PLURAL, PIPELINE_PATH, handlers.pipeline),
        (TASK_PLURAL, TASK_PATH, handlers.task),
    ):
        kopf.on.validate(
            GROUP,
            VERSION,
            plural,
            id=path.lstrip("/"),
            operations=["CREATE", "UPDATE"],
            registry=registry,
        )(fn)  # type: ignore[arg-type]  # kopf's protocol spells out every kwarg
    return Webhook(config, handlers, server, registrar, certs, tmp)
