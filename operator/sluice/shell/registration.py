"""The ValidatingWebhookConfiguration of a local operator (``--admission local``):
what it says, and its registration through Sluice's own client.

In ``cluster`` mode the chart owns the configuration; these constants are what
both must agree on (tests/unit/test_packaging_chart.py checks it).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from typing import Any, Final

from sluice.api import GROUP, PIPELINE_PLURAL, TASK_PLURAL, VERSION
from sluice.shell import scope
from sluice.shell.kube import ApiError, Kube

__all__ = [
    "CLUSTER_PORT",
    "FAILURE_POLICY",
    "PIPELINE_PATH",
    "PIPELINE_WEBHOOK",
    "TASK_PATH",
    "TASK_WEBHOOK",
    "TIMEOUT_SECONDS",
    "Registrar",
    "local_configuration_name",
    "namespace_selector",
    "webhook_configuration",
]

log = logging.getLogger(__name__)

PIPELINE_WEBHOOK: Final = f"validate.{PIPELINE_PLURAL}.{GROUP}"
TASK_WEBHOOK: Final = f"validate.{TASK_PLURAL}.{GROUP}"
PIPELINE_PATH: Final = "/validate-pipeline"
"""URL path of the Pipeline webhook (kopf routes on the handler id)."""
TASK_PATH: Final = "/validate-task"
FAILURE_POLICY: Final = "Ignore"
TIMEOUT_SECONDS: Final = 10
CLUSTER_PORT: Final = 9443
NAMESPACE_LABEL: Final = "kubernetes.io/metadata.name"


def local_configuration_name(namespaces: Sequence[str]) -> str:
    """The ValidatingWebhookConfiguration of a local operator: one per watched scope."""
    return scope.scoped_name("sluice-admission-local", namespaces)


def namespace_selector(namespaces: Sequence[str]) -> dict[str, Any]:
    """Exactly the watched namespaces, or every namespace but kube-system.

    Label selectors cannot express globs: with a glob pattern the selector is the
    broad one and the handlers admit requests from namespaces they do not watch.
    """
    if namespaces and not scope.has_globs(namespaces):
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

    def __init__(self, kube: Kube, name: str, namespaces: Sequence[str]) -> None:
        self.kube = kube
        self.name = name
        self.namespaces = list(namespaces)
        self.registered = False

    async def register(self, url: str, ca_bundle: bytes) -> None:
        body = webhook_configuration(self.name, url, ca_bundle, self.namespaces)
        try:
            await self.kube.create_webhook_configuration(body)
        except ApiError as e:
            if e.status != 409:
                raise
            # Left behind by an operator that was killed: take it over.
            current = await self.kube.read_webhook_configuration(self.name)
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            await self.kube.replace_webhook_configuration(self.name, body)
        self.registered = True
        log.info("registered ValidatingWebhookConfiguration %s -> %s", self.name, url)

    async def unregister(self) -> None:
        """Remove it (idempotent; only if this process registered it)."""
        if not self.registered:
            return
        self.registered = False
        try:
            await self.kube.delete_webhook_configuration(self.name)
            log.info("removed ValidatingWebhookConfiguration %s", self.name)
        except ApiError as e:
            if e.status != 404:
                log.warning("could not remove ValidatingWebhookConfiguration %s: %s", self.name, e)
        except Exception as e:  # the API server may be gone at shutdown
            log.warning("could not remove ValidatingWebhookConfiguration %s: %r", self.name, e)
