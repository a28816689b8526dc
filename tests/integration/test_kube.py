"""Sluice's own API client (sluice.shell.kube) against the real API server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes import client, config

from sluice.shell.kube import ApiError, Kube
from support.cluster import Cluster

pytestmark = pytest.mark.cluster


def _kube(cluster: Cluster) -> Kube:
    cfg = client.Configuration()
    config.load_kube_config(str(cluster.kubeconfig), client_configuration=cfg)
    return Kube(cfg)


def test_jobs_are_created_with_strict_field_validation(cluster: Cluster, namespace: str) -> None:
    # A field the API server does not know (a typo that got past the checks) is refused
    # with the server's own words, not silently dropped from the Job.
    manifest: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "strict"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelecter": {"disk": "ssd"},
                    "containers": [{"name": "c", "image": "busybox:1.36"}],
                }
            }
        },
    }

    async def create() -> None:
        kube = _kube(cluster)
        try:
            await kube.create_job(namespace, manifest)
        finally:
            await kube.close()

    with pytest.raises(ApiError) as refused:
        asyncio.run(create())
    assert refused.value.status in (400, 422)
    assert 'unknown field "spec.template.spec.nodeSelecter"' in refused.value.message


def test_a_lease_is_read_created_and_replaced_only_at_its_version(
    cluster: Cluster, namespace: str
) -> None:
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "l"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 5},
    }

    async def scenario() -> None:
        kube = _kube(cluster)
        try:
            created = await kube.create_lease(namespace, lease)
            read = await kube.read_lease(namespace, "l")
            assert read["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
            await kube.replace_lease(namespace, "l", {**read, "spec": {"holderIdentity": "b"}})
            with pytest.raises(ApiError) as stale:
                await kube.replace_lease(namespace, "l", read)
            assert stale.value.status == 409
        finally:
            await kube.close()

    asyncio.run(scenario())
