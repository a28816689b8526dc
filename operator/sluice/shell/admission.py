"""The validating admission webhook: a bad Pipeline or Task is refused at ``kubectl apply``.

The checks are ``sluice.core.validation``'s; this module only serves them. kopf's
``@kopf.on.validate`` handlers answer the API server's AdmissionReviews, on a
``kopf.WebhookServer``, in a kopf instance of their own (own registry, own thread)
that starts before leader election: every replica answers reviews, a standby one as
well as the leader, since validating needs no leadership. So a Service in front of
several replicas (readiness: the webhook port) never routes a review to a replica
that does not listen, and a rolling update never waits for a standby to lead. The
Tasks a Pipeline refers to are listed from the API server per review (only for
Pipelines with a ``taskRef``). ``sluice run --admission MODE`` picks how it is reached:

``off`` (the default)
    No webhook. The CRD schema and its CEL rules still refuse what they can at
    apply time, and the operator fails whatever else is wrong (phase ``Failed``,
    reason ``InvalidSpec``, an Event) with the message the webhook would have given.

``local`` (``make dev``: an operator outside the cluster, next to its API server)
    Serves HTTPS on 127.0.0.1 (any free port unless ``--webhook-port``) with a
    certificate authority it generates at start (the ``cryptography`` package;
    kopf's own self-signed generation needs oscrypto, which cannot find libcrypto
    on some systems), and registers a ValidatingWebhookConfiguration pointing at
    it, removed again on a clean stop. Its ``namespaceSelector`` (on the
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

import asyncio
import contextlib
import datetime
import fnmatch
import hashlib
import ipaddress
import json
import logging
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import kopf
from kubernetes import client

from sluice.api import GROUP, PIPELINE_PLURAL, TASK_PLURAL, VERSION
from sluice.core import validation

__all__ = [
    "FAILURE_POLICY",
    "PIPELINE_PATH",
    "PIPELINE_WEBHOOK",
    "TASK_PATH",
    "TASK_WEBHOOK",
    "AdmissionConfig",
    "CertificateFiles",
    "Registrar",
    "build",
    "local_configuration_name",
    "make_certificates",
    "namespace_selector",
    "start",
    "tasks_from_api",
    "watched",
    "webhook_configuration",
]

log = logging.getLogger(__name__)

Mode = Literal["off", "local", "cluster"]

PIPELINE_WEBHOOK: Final = f"validate.{PIPELINE_PLURAL}.{GROUP}"
TASK_WEBHOOK: Final = f"validate.{TASK_PLURAL}.{GROUP}"
PIPELINE_PATH: Final = "/validate-pipeline"
"""URL path of the Pipeline webhook (kopf routes on the handler id)."""
TASK_PATH: Final = "/validate-task"
FAILURE_POLICY: Final = "Ignore"
TIMEOUT_SECONDS: Final = 10
CLUSTER_PORT: Final = 9443
NAMESPACE_LABEL: Final = "kubernetes.io/metadata.name"
_GLOB_CHARS: Final = frozenset("*?[],!")


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


# ----------------------------------------------------------------------------- handlers


def watched(namespace: str | None, patterns: Sequence[str]) -> bool:
    """Whether ``namespace`` is one the operator watches (kopf's pattern rules)."""
    if not patterns:
        return True
    return namespace is not None and any(_match(namespace, p) for p in patterns)


def _match(name: str, pattern: str) -> bool:
    # kopf's references.match_namespace: comma-separated globs, "!" excludes, a leading
    # exclusion implies a catch-all first.
    globs = [g.strip() for g in pattern.split(",")]
    if not globs or globs[0].startswith("!"):
        globs.insert(0, "*")
    matches = first = fnmatch.fnmatchcase(name, globs[0])
    for glob in globs[1:]:
        if glob.startswith("!"):
            matches = matches and not fnmatch.fnmatchcase(name, glob.lstrip("!"))
        else:
            matches = matches or (first and fnmatch.fnmatchcase(name, glob))
    return matches


def _spec_unchanged(operation: str | None, body: Mapping[str, Any], old: Any) -> bool:
    return operation == "UPDATE" and old is not None and old.get("spec") == body.get("spec")


def _size(body: Mapping[str, Any]) -> int:
    return len(json.dumps(dict(body), separators=(",", ":"), default=str).encode())


TasksOf = Callable[[str], Mapping[str, Mapping[str, Any]] | None]
"""The Task objects of a namespace by name (``{"spec": ...}``), or None if unknown."""


def _no_tasks(namespace: str) -> None:
    return None


def tasks_from_api(api: client.ApiClient, timeout: float = 5.0) -> TasksOf:
    """A Task lookup that lists the namespace's Tasks (one call per Pipeline review).

    Any failure reads as "unknown": the checks that need the Tasks are skipped, and the
    operator makes them anyway.
    """
    custom = client.CustomObjectsApi(api)

    def tasks_of(namespace: str) -> Mapping[str, Mapping[str, Any]] | None:
        try:
            resp = custom.list_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                TASK_PLURAL,
                _preload_content=False,
                _request_timeout=timeout,
            )
            items = json.loads(resp.data).get("items") or []
        except Exception as e:  # the webhook must answer whatever happens
            log.warning("could not list the Tasks of %s: %s", namespace, e)
            return None
        return {t["metadata"]["name"]: t for t in items}

    return tasks_of


def _uses_task_refs(spec: Any) -> bool:
    steps = spec.get("tasks") if isinstance(spec, Mapping) else None
    return isinstance(steps, list) and any(isinstance(t, Mapping) and "taskRef" in t for t in steps)


@dataclass
class _Handlers:
    namespaces: Sequence[str]
    tasks_of: TasksOf = _no_tasks
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


# ----------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class CertificateFiles:
    ca: Path
    cert: Path
    key: Path

    @property
    def ca_bundle(self) -> bytes:
        return self.ca.read_bytes()


def make_certificates(
    directory: Path,
    hosts: Collection[str] = ("127.0.0.1", "localhost"),
    days: int = 365,
) -> CertificateFiles:
    """A fresh certificate authority and a serving certificate for ``hosts``, as PEM files.

    ECDSA P-256 (fast to generate, accepted by the API server's Go TLS). The CA's key
    is never written: nothing else is ever signed with it.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sluice-admission-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, next(iter(hosts)))]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    files = CertificateFiles(directory / "ca.crt", directory / "tls.crt", directory / "tls.key")
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.touch(mode=0o600)
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


# ----------------------------------------------------------------------------- configuration


def local_configuration_name(namespaces: Sequence[str]) -> str:
    """The ValidatingWebhookConfiguration of a local operator: one per watched scope."""
    if not namespaces:
        return "sluice-admission-local"
    digest = hashlib.sha256("\0".join(sorted(namespaces)).encode()).hexdigest()[:10]
    return f"sluice-admission-local-{digest}"


def namespace_selector(namespaces: Sequence[str]) -> dict[str, Any]:
    """Exactly the watched namespaces, or every namespace but kube-system.

    Label selectors cannot express globs: with a glob pattern the selector is the
    broad one and the handlers admit requests from namespaces they do not watch.
    """
    if namespaces and not any(_GLOB_CHARS & set(ns) for ns in namespaces):
        values = sorted(set(namespaces))
        return {"matchExpressions": [{"key": NAMESPACE_LABEL, "operator": "In", "values": values}]}
    return {
        "matchExpressions": [
            {"key": NAMESPACE_LABEL, "operator": "NotIn", "values": ["kube-system"]}
        ]
    }


def webhook_configuration(
    name: str, url: str, ca_bundle: bytes, namespaces: Sequence[str]
) -> dict[str, Any]:
    """The ValidatingWebhookConfiguration of a local operator serving at ``url``."""
    import base64

    selector = namespace_selector(namespaces)
    ca = base64.b64encode(ca_bundle).decode()

    def webhook(webhook_name: str, plural: str, path: str) -> dict[str, Any]:
        return {
            "name": webhook_name,
            "admissionReviewVersions": ["v1"],
            "clientConfig": {"url": url.rstrip("/") + path, "caBundle": ca},
            "rules": [
                {
                    "apiGroups": [GROUP],
                    "apiVersions": [VERSION],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": [plural],
                    "scope": "Namespaced",
                }
            ],
            "failurePolicy": FAILURE_POLICY,
            "matchPolicy": "Equivalent",
            "sideEffects": "None",
            "timeoutSeconds": TIMEOUT_SECONDS,
            "namespaceSelector": selector,
        }

    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {
            "name": name,
            "labels": {
                "app.kubernetes.io/managed-by": "sluice",
                "app.kubernetes.io/component": "admission-local",
            },
        },
        "webhooks": [
            webhook(PIPELINE_WEBHOOK, PIPELINE_PLURAL, PIPELINE_PATH),
            webhook(TASK_WEBHOOK, TASK_PLURAL, TASK_PATH),
        ],
    }


class Registrar:
    """Creates, updates and removes one ValidatingWebhookConfiguration (local mode)."""

    def __init__(self, api: client.ApiClient, name: str, namespaces: Sequence[str]) -> None:
        self.api = client.AdmissionregistrationV1Api(api)
        self.name = name
        self.namespaces = list(namespaces)
        self.registered = False

    def register(self, url: str, ca_bundle: bytes) -> None:
        body = webhook_configuration(self.name, url, ca_bundle, self.namespaces)
        try:
            self.api.create_validating_webhook_configuration(body, _preload_content=False)
        except client.ApiException as e:
            if e.status != 409:
                raise
            # Left behind by an operator that was killed: take it over.
            current = self.api.read_validating_webhook_configuration(self.name)
            body["metadata"]["resourceVersion"] = current.metadata.resource_version
            self.api.replace_validating_webhook_configuration(
                self.name, body, _preload_content=False
            )
        self.registered = True
        log.info("registered ValidatingWebhookConfiguration %s -> %s", self.name, url)

    def unregister(self) -> None:
        """Remove it (idempotent; only if this process registered it)."""
        if not self.registered:
            return
        self.registered = False
        try:
            self.api.delete_validating_webhook_configuration(self.name, _preload_content=False)
            log.info("removed ValidatingWebhookConfiguration %s", self.name)
        except client.ApiException as e:
            if e.status != 404:
                log.warning("could not remove ValidatingWebhookConfiguration %s: %s", self.name, e)
        except Exception as e:  # the API server may be gone at shutdown
            log.warning("could not remove ValidatingWebhookConfiguration %s: %s", self.name, e)


class _LocalWebhookServer(kopf.WebhookServer):
    """kopf's server, registering its configuration while it serves."""

    def __init__(self, registrar: Registrar, ca_bundle: bytes, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.registrar = registrar
        self.ca_bundle = ca_bundle

    async def __call__(self, fn: Any) -> AsyncIterator[Any]:
        try:
            async for client_config in super().__call__(fn):
                url = client_config.get("url") or ""
                await asyncio.to_thread(self.registrar.register, url, self.ca_bundle)
                yield client_config
        finally:
            # A clean stop: the API server must stop calling a webhook that is going away.
            # (Synchronous on purpose: this runs while the task is being cancelled.)
            self.registrar.unregister()


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
class Admission:
    """The webhook: its own kopf instance, serving in a thread; ``close`` stops it."""

    config: AdmissionConfig
    handlers: _Handlers
    registry: kopf.OperatorRegistry
    settings: kopf.OperatorSettings
    registrar: Registrar | None = None
    certificates: CertificateFiles | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _ready: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Admission:
        """Serve from now on, whether or not this replica leads (see the module docs)."""
        self._thread = threading.Thread(target=self._serve, name="sluice-admission", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        try:
            asyncio.run(
                kopf.operator(
                    registry=self.registry,
                    settings=self.settings,
                    standalone=True,
                    clusterwide=True,  # it watches nothing: webhooks know no namespaces
                    stop_flag=self._stop,
                    ready_flag=self._ready,
                    memo=kopf.Memo(),
                )
            )
        except Exception:
            log.exception("the admission webhook stopped; the operator still checks every pipeline")

    def close(self, timeout: float = 10.0) -> None:
        """Stop serving and remove a local registration (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.registrar is not None:
            self.registrar.unregister()
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.cleanup()
            self._tmp = None


def build(config: AdmissionConfig, api: client.ApiClient | None = None) -> Admission | None:
    """The webhook for ``config.mode`` (None for ``off``), ready to ``start``.

    Its own kopf registry and settings: the webhook runs in a kopf instance of its own,
    started before leader election, so every replica answers reviews (a standby one as
    well as the leader; validation needs no leadership) and a Service in front of them
    never routes a review to a replica that does not listen.
    """
    if config.mode == "off":
        return None
    if config.mode == "cluster" and (config.cert_file is None or config.key_file is None):
        raise ValueError("--admission cluster needs --webhook-cert-file and --webhook-key-file")
    if api is None:
        from sluice.shell.kube import load_client

        api = load_client(pool_size=4)
    logging.getLogger("kopf.objects").addFilter(_QuietRefusals())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # a line per request

    handlers = _Handlers(list(config.namespaces), tasks_from_api(api))
    registry = kopf.OperatorRegistry()
    settings = kopf.OperatorSettings()
    admission = Admission(config, handlers, registry, settings)
    if config.mode == "local":
        admission._tmp = tempfile.TemporaryDirectory(prefix="sluice-admission-")
        certs = admission.certificates = make_certificates(Path(admission._tmp.name))
        admission.registrar = Registrar(
            api, local_configuration_name(config.namespaces), config.namespaces
        )
        server: kopf.WebhookServer = _LocalWebhookServer(
            admission.registrar,
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
    settings.scanning.disabled = True  # no CRD or namespace watching (and no RBAC for it)
    settings.posting.enabled = False  # refusals are answers, not Events
    kopf.on.login(registry=registry)(kopf.login_via_client)
    kopf.on.validate(
        GROUP,
        VERSION,
        PIPELINE_PLURAL,
        id=PIPELINE_PATH.lstrip("/"),
        operations=["CREATE", "UPDATE"],
        registry=registry,
    )(handlers.pipeline)  # type: ignore[arg-type]  # kopf's protocol spells out every kwarg
    kopf.on.validate(
        GROUP,
        VERSION,
        TASK_PLURAL,
        id=TASK_PATH.lstrip("/"),
        operations=["CREATE", "UPDATE"],
        registry=registry,
    )(handlers.task)  # type: ignore[arg-type]
    return admission


def start(config: AdmissionConfig, api: client.ApiClient | None = None) -> Admission | None:
    """Build the webhook for ``config`` and start serving it (None for ``off``)."""
    admission = build(config, api)
    return admission.start() if admission is not None else None
