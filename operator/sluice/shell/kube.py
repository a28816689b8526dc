"""The few API calls Sluice makes, on the official client, returning plain dicts.

Calls are synchronous (the official client is) and are run in worker threads
by the controller so kopf's event loop never blocks. ``_preload_content=False``
skips the client's slow model deserialisation: we read the raw JSON.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from sluice.api import GROUP, PIPELINE_KIND, PIPELINE_PLURAL, VERSION

__all__ = ["ApiException", "Kube", "load_client"]

log = logging.getLogger(__name__)


def load_client(pool_size: int = 32) -> client.ApiClient:
    """In-cluster config when running in a pod, else KUBECONFIG / ~/.kube/config."""
    cfg = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=cfg)
    except config.ConfigException:
        config.load_kube_config(client_configuration=cfg)
    cfg.connection_pool_maxsize = pool_size
    return client.ApiClient(cfg)


class Kube:
    """Job, status and Event calls for one API client."""

    def __init__(self, api: client.ApiClient, component: str = "sluice") -> None:
        self.api = api
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.component = component

    def create_job(self, namespace: str, manifest: dict[str, Any]) -> None:
        self.batch.create_namespaced_job(namespace, manifest, _preload_content=False)

    def read_job(self, namespace: str, name: str) -> dict[str, Any]:
        resp = self.batch.read_namespaced_job(name, namespace, _preload_content=False)
        data: dict[str, Any] = json.loads(resp.data)
        return data

    def delete_job(self, namespace: str, name: str) -> None:
        self.batch.delete_namespaced_job(
            name, namespace, propagation_policy="Background", _preload_content=False
        )

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the status subresource; returns the updated Pipeline."""
        resp = self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            PIPELINE_PLURAL,
            name,
            {"status": patch},
            _content_type="application/merge-patch+json",
            _preload_content=False,
        )
        data: dict[str, Any] = json.loads(resp.data)
        return data

    def post_event(self, pipeline: dict[str, Any], type_: str, reason: str, message: str) -> None:
        meta = pipeline.get("metadata") or {}
        now = datetime.now(UTC)
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta.get('name', 'pipeline')[:200]}.{uuid.uuid4().hex[:12]}",
                "namespace": meta.get("namespace"),
            },
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": PIPELINE_KIND,
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "reportingInstance": self.component,
            "firstTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "count": 1,
        }
        self.core.create_namespaced_event(meta.get("namespace"), body, _preload_content=False)
