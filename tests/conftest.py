"""Fixtures: the local control plane (session), the CRDs, a running operator,
and fresh namespaces per test."""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client, config

from support.cluster import ROOT, Cluster, ensure_cluster
from support.operator import OperatorProcess
from support.wait import wait_for

E2E_PREFIX = "e2e-"
"""Namespaces the shared test operator watches (a glob on this prefix)."""


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """The real local control plane: started on first use, reused if already up.

    An operator left running by `make dev` watches every namespace and would act
    on the tests' pipelines too, so it is stopped first.
    """
    c = ensure_cluster()
    pidfile = c.kubeconfig.parent / "pids" / "operator.pid"
    if pidfile.exists():
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
            print("stopped the operator started by `make dev` (tests run their own)")
        pidfile.unlink(missing_ok=True)
    return c


@pytest.fixture(scope="session")
def api_client(cluster: Cluster) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


def _make_namespace(api_client: client.ApiClient, name: str) -> str:
    core = client.CoreV1Api(api_client)
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
    return name


@pytest.fixture
def make_namespace(
    request: pytest.FixtureRequest, api_client: client.ApiClient
) -> Iterator[Callable[[str], str]]:
    """Create namespaces `PREFIX<test>-<random>`, ready for pods, removed after the test."""
    made: list[str] = []

    def make(prefix: str = "t-") -> str:
        base = request.node.name.lower().replace("_", "-")
        base = "".join(c for c in base if c.isalnum() or c == "-")[:40].strip("-")
        name = _make_namespace(api_client, f"{prefix}{base}-{uuid.uuid4().hex[:6]}")
        made.append(name)
        return name

    yield make
    core = client.CoreV1Api(api_client)
    for name in made:
        core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def namespace(make_namespace: Callable[[str], str]) -> str:
    """A fresh namespace, ready for pods (its default ServiceAccount exists)."""
    return make_namespace("t-")


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> None:
    """The Sluice CRDs, installed server-side and established."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/pipelines.sluice.dev",
        "crd/tasks.sluice.dev",
    )


@pytest.fixture(scope="session")
def operator(
    cluster: Cluster, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """One operator for the end-to-end tests, watching the `e2e-*` namespaces."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    op = OperatorProcess(cluster.kubeconfig, log, namespaces=[f"{E2E_PREFIX}*"]).start()
    yield op
    op.stop()


@pytest.fixture
def e2e_namespace(operator: OperatorProcess, make_namespace: Callable[[str], str]) -> str:
    """A fresh namespace the shared operator watches."""
    return make_namespace(E2E_PREFIX)


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    # On failure, show the operator's log: the first thing anyone asks for.
    if call.excinfo is not None and call.when == "call":
        op = item.funcargs.get("operator") if hasattr(item, "funcargs") else None
        if isinstance(op, OperatorProcess):
            item.add_report_section("call", "operator log", op.log())
