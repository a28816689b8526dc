"""Fixtures: the local control plane (session) and a fresh namespace per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client, config

from support.cluster import Cluster, ensure_cluster
from support.wait import wait_for


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """The real local control plane: started on first use, reused if already up."""
    return ensure_cluster()


@pytest.fixture(scope="session")
def api_client(cluster: Cluster) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


@pytest.fixture
def namespace(request: pytest.FixtureRequest, api_client: client.ApiClient) -> Iterator[str]:
    """A fresh namespace, ready for pods (its default ServiceAccount exists), removed after."""
    core = client.CoreV1Api(api_client)
    base = request.node.name.lower().replace("_", "-")[:40].strip("-")
    name = f"t-{base}-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

    def default_sa() -> bool:
        try:
            core.read_namespaced_service_account("default", name)
        except client.ApiException as e:
            if e.status == 404:
                return False
            raise
        return True

    wait_for(default_sa, timeout=60, what=f"the default ServiceAccount in {name}")
    yield name
    core.delete_namespace(name, propagation_policy="Background")
