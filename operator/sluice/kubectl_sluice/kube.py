"""The plugin's API calls, through the official ``kubernetes`` client (kubeconfig,
``--context``, ``KUBECONFIG`` lists and in-cluster config all as kubectl has them).

Every failure a user can cause or meet (no kubeconfig, no cluster reachable, no such
pipeline, no CRDs, forbidden) becomes a :class:`UserError` carrying one sentence.
Objects are read raw (plain dicts), not as the client's model classes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import urllib3
from kubernetes import client, config, watch
from kubernetes.config.config_exception import ConfigException

from sluice.api import GROUP, PIPELINE_PLURAL, VERSION

__all__ = ["Conn", "UserError", "connect"]

T = TypeVar("T")
TIMEOUT: Final = (5, 30)
"""(connect, read) seconds for every call but streams."""
_SA_NAMESPACE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class UserError(Exception):
    """Something the user can fix; the message is one sentence, shown as is."""


def _reason(e: BaseException) -> str:
    inner = getattr(e, "reason", None)
    text = str(inner or e)
    for marker in ("Connection refused", "timed out", "Name or service not known", "SSL"):
        if marker in text:
            return {"SSL": "TLS handshake failed"}.get(marker, marker.lower())
    return text.split(": ", 1)[-1][:120]


def _status_message(e: client.ApiException) -> tuple[str, Mapping[str, Any]]:
    try:
        body = json.loads(e.body or "{}")
    except ValueError:
        return (e.body or e.reason or "").strip()[:200], {}
    if not isinstance(body, Mapping):
        return str(body)[:200], {}
    return str(body.get("message") or e.reason or ""), body


@dataclass
class Conn:
    api: client.ApiClient
    namespace: str
    """The namespace to use when none is given: the context's, or ``default``."""

    @property
    def host(self) -> str:
        return str(self.api.configuration.host)

    def call(self, what: str, fn: Callable[[], T], not_found: str | None = None) -> T:
        """Run one API call; turn its failures into a UserError naming ``what``."""
        try:
            return fn()
        except client.ApiException as e:
            message, body = _status_message(e)
            if e.status == 404:
                details = body.get("details") if isinstance(body, Mapping) else None
                if not_found and isinstance(details, Mapping) and details.get("name"):
                    raise UserError(not_found) from None
                if not_found and "pods" in what:
                    raise UserError(not_found) from None
                raise UserError(
                    f"the Sluice CRDs are not installed in the cluster at {self.host} "
                    f"({PIPELINE_PLURAL}.{GROUP} is unknown to it)"
                    if "pipeline" in what
                    else f"cannot {what}: not found"
                ) from None
            if e.status == 401:
                raise UserError(
                    f"the API server at {self.host} did not accept your credentials (401)"
                ) from None
            if e.status == 403:
                raise UserError(f"not allowed to {what}: {message}") from None
            raise UserError(f"cannot {what}: {message or e.reason} ({e.status})") from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise UserError(
                f"cannot reach the Kubernetes API server at {self.host}: {_reason(e)}"
            ) from None

    # --- pipelines ------------------------------------------------------------------

    def _custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def get_pipeline(self, namespace: str, name: str) -> dict[str, Any]:
        resp = self.call(
            f"get pipeline {name}",
            lambda: self._custom().get_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PIPELINE_PLURAL,
                name,
                _preload_content=False,
                _request_timeout=TIMEOUT,
            ),
            not_found=f'pipeline "{name}" not found in namespace "{namespace}"',
        )
        obj: dict[str, Any] = json.loads(resp.data)
        return obj

    def list_pipelines(self, namespace: str | None) -> list[dict[str, Any]]:
        custom = self._custom()
        if namespace is None:
            resp = self.call(
                "list pipelines",
                lambda: custom.list_cluster_custom_object(
                    GROUP,
                    VERSION,
                    PIPELINE_PLURAL,
                    _preload_content=False,
                    _request_timeout=TIMEOUT,
                ),
            )
        else:
            resp = self.call(
                "list pipelines",
                lambda: custom.list_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    namespace,
                    PIPELINE_PLURAL,
                    _preload_content=False,
                    _request_timeout=TIMEOUT,
                ),
            )
        items: list[dict[str, Any]] = json.loads(resp.data).get("items") or []
        return items

    def patch_pipeline(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        self.call(
            f"update pipeline {name}",
            lambda: self._custom().patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PIPELINE_PLURAL,
                name,
                dict(body),
                _preload_content=False,
                _request_timeout=TIMEOUT,
            ),
            not_found=f'pipeline "{name}" not found in namespace "{namespace}"',
        )

    def watch_pipeline(
        self, namespace: str, name: str, resource_version: str | None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event type, object) of one pipeline, until the server ends the watch."""
        w = watch.Watch()
        kwargs: dict[str, Any] = {
            "field_selector": f"metadata.name={name}",
            "timeout_seconds": 120,
            "allow_watch_bookmarks": False,
        }
        if resource_version:
            kwargs["resource_version"] = resource_version
        for event in w.stream(
            self._custom().list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PIPELINE_PLURAL,
            **kwargs,
        ):
            yield str(event.get("type")), event.get("raw_object") or event.get("object") or {}

    # --- pods -------------------------------------------------------------------------

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        resp = self.call(
            "list pods",
            lambda: client.CoreV1Api(self.api).list_namespaced_pod(
                namespace,
                label_selector=selector,
                _preload_content=False,
                _request_timeout=TIMEOUT,
            ),
        )
        items: list[dict[str, Any]] = json.loads(resp.data).get("items") or []
        return items

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            resp = client.CoreV1Api(self.api).read_namespaced_pod(
                name, namespace, _preload_content=False, _request_timeout=TIMEOUT
            )
        except client.ApiException as e:
            if e.status == 404:
                return None
            raise
        pod: dict[str, Any] = json.loads(resp.data)
        return pod

    def pod_log(
        self, namespace: str, pod: str, container: str, follow: bool = False
    ) -> urllib3.HTTPResponse:
        """The log of one container, as a raw response to read or stream."""
        resp: urllib3.HTTPResponse = client.CoreV1Api(self.api).read_namespaced_pod_log(
            pod,
            namespace,
            container=container,
            follow=follow,
            _preload_content=False,
            _request_timeout=None if follow else TIMEOUT,
        )
        return resp


def _context_namespace(kubeconfig: str | None, context: str | None) -> str | None:
    try:
        contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)
    except (ConfigException, OSError, TypeError, ValueError):
        return None
    chosen = current
    if context is not None:
        chosen = next((c for c in contexts or [] if c.get("name") == context), None)
    ns = ((chosen or {}).get("context") or {}).get("namespace")
    return ns if isinstance(ns, str) and ns else None


def _kubeconfig_exists(path: str | None) -> bool:
    if path:
        return Path(path).expanduser().exists()
    env = os.environ.get("KUBECONFIG")
    if env:
        return any(Path(p).expanduser().exists() for p in env.split(os.pathsep) if p)
    return Path("~/.kube/config").expanduser().exists()


def connect(kubeconfig: str | None = None, context: str | None = None) -> Conn:
    """An API client as kubectl would configure it: ``--kubeconfig``, else ``KUBECONFIG``,
    else ``~/.kube/config``, else the in-cluster service account."""
    if kubeconfig and not Path(kubeconfig).expanduser().exists():
        raise UserError(f"the kubeconfig file {kubeconfig} does not exist")
    if not _kubeconfig_exists(kubeconfig) and os.environ.get("KUBERNETES_SERVICE_HOST"):
        if context:
            raise UserError("--context needs a kubeconfig file; none was found")
        try:
            config.load_incluster_config()
        except ConfigException as e:
            raise UserError(f"cannot use the in-cluster configuration: {e}") from None
        ns = _SA_NAMESPACE.read_text().strip() if _SA_NAMESPACE.exists() else "default"
        return Conn(client.ApiClient(), ns or "default")
    if not _kubeconfig_exists(kubeconfig):
        raise UserError(
            "no cluster configured: no kubeconfig found (set KUBECONFIG or pass --kubeconfig)"
        )
    cfg = client.Configuration()
    try:
        config.load_kube_config(
            config_file=kubeconfig, context=context, client_configuration=cfg, persist_config=False
        )
    except ConfigException as e:
        text = str(e).strip().rstrip(".")
        if context and "context" in text.lower():
            raise UserError(f'the kubeconfig has no context "{context}"') from None
        raise UserError(f"the kubeconfig cannot be used: {text}") from None
    except (OSError, ValueError, TypeError) as e:
        raise UserError(f"the kubeconfig cannot be used: {e}") from None
    cfg.retries = 1  # fail fast on a dead server instead of retrying for long
    return Conn(client.ApiClient(cfg), _context_namespace(kubeconfig, context) or "default")
