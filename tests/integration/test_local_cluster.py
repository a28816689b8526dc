"""The local control plane is real: the Job controller, the scheduler, RBAC and
the simulation contract (`sim.sluice.dev/*`) behave as other tests rely on."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from kubernetes import client

from support.cluster import ROOT, Cluster, run_cluster_script
from support.wait import wait_for

pytestmark = pytest.mark.cluster


def _job(
    name: str, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "podFailurePolicy": {
                "rules": [
                    {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget"}]},
                    {"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [0]}},
                ]
            },
            "template": {
                "metadata": {"labels": labels or {}, "annotations": annotations or {}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox:1.36"}],
                },
            },
        },
    }


def _condition(batch: client.BatchV1Api, ns: str, name: str) -> client.V1JobCondition | None:
    job = batch.read_namespaced_job_status(name, ns)
    for c in job.status.conditions or []:
        if c.type in ("Complete", "Failed") and c.status == "True":
            return c
    return None


def test_nodes_are_ready_and_kubeconfig_is_at_the_contract_path(
    cluster: Cluster, api_client: client.ApiClient
) -> None:
    assert cluster.kubeconfig == ROOT / ".cluster" / "kubeconfig" or os.environ.get(
        "SLUICE_CLUSTER_DIR"
    )
    nodes = client.CoreV1Api(api_client).list_node().items
    ready = [
        n
        for n in nodes
        if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)
    ]
    assert len(ready) >= 2
    version = cluster.kubectl("version", "-o", "json").stdout
    assert '"gitVersion": "v1.37.2"' in version


def test_a_job_completes_through_the_real_job_controller(
    api_client: client.ApiClient, namespace: str
) -> None:
    batch = client.BatchV1Api(api_client)
    batch.create_namespaced_job(namespace, _job("ok"))
    cond = wait_for(lambda: _condition(batch, namespace, "ok"), timeout=60, what="job ok to end")
    assert cond.type == "Complete"
    job = batch.read_namespaced_job_status("ok", namespace)
    assert job.status.succeeded == 1


def test_a_pod_labelled_to_fail_fails_its_job_with_the_annotated_exit_code(
    api_client: client.ApiClient, namespace: str
) -> None:
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    batch.create_namespaced_job(
        namespace,
        _job("bad", {"sim.sluice.dev/outcome": "fail"}, {"sim.sluice.dev/exit-code": "42"}),
    )
    cond = wait_for(lambda: _condition(batch, namespace, "bad"), timeout=60, what="job bad to end")
    assert cond.type == "Failed"
    # The Job controller's own words, produced by the pod failure policy.
    assert cond.reason == "PodFailurePolicy"
    assert "exit code 42" in cond.message
    pod = core.list_namespaced_pod(namespace, label_selector="job-name=bad").items[0]
    assert pod.status.phase == "Failed"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 42


def test_a_failing_pod_defaults_to_exit_code_1_and_backoff_limit_exceeded(
    api_client: client.ApiClient, namespace: str
) -> None:
    batch = client.BatchV1Api(api_client)
    manifest = _job("plain-bad", {"sim.sluice.dev/outcome": "fail"})
    del manifest["spec"]["podFailurePolicy"]
    batch.create_namespaced_job(namespace, manifest)
    cond = wait_for(lambda: _condition(batch, namespace, "plain-bad"), timeout=60, what="job end")
    assert (cond.type, cond.reason) == ("Failed", "BackoffLimitExceeded")
    core = client.CoreV1Api(api_client)
    pod = core.list_namespaced_pod(namespace, label_selector="job-name=plain-bad").items[0]
    assert pod.status.container_statuses[0].state.terminated.exit_code == 1


def test_the_duration_annotation_sets_how_long_a_pod_runs(
    api_client: client.ApiClient, namespace: str
) -> None:
    batch = client.BatchV1Api(api_client)
    started = time.monotonic()
    batch.create_namespaced_job(
        namespace, _job("slow", annotations={"sim.sluice.dev/duration": "4s"})
    )
    batch.create_namespaced_job(namespace, _job("quick"))
    wait_for(lambda: _condition(batch, namespace, "quick"), timeout=60, what="quick job")
    quick = time.monotonic() - started
    wait_for(lambda: _condition(batch, namespace, "slow"), timeout=60, what="slow job")
    slow = time.monotonic() - started
    assert slow >= 4.0
    assert quick < slow
    # The pod itself records when it started running and when it finished.
    pod = (
        client.CoreV1Api(api_client)
        .list_namespaced_pod(namespace, label_selector="job-name=slow")
        .items[0]
    )
    ran = pod.status.container_statuses[0].state.terminated.finished_at - pod.status.start_time
    assert ran.total_seconds() >= 3  # second-resolution timestamps


def test_rbac_is_enforced_for_a_service_account_without_rights(
    api_client: client.ApiClient, cluster: Cluster, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody"))
    )
    token = core.create_namespaced_service_account_token(
        "nobody", namespace, client.AuthenticationV1TokenRequest(spec={"audiences": []})
    ).status.token
    cfg = client.Configuration()
    cfg.host = api_client.configuration.host
    cfg.ssl_ca_cert = api_client.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(cfg) as as_nobody:
        with pytest.raises(client.ApiException) as err:
            client.CoreV1Api(as_nobody).list_namespaced_pod(namespace)
        assert err.value.status == 403
        with pytest.raises(client.ApiException) as err:
            client.BatchV1Api(as_nobody).create_namespaced_job(namespace, _job("nope"))
        assert err.value.status == 403
    # And the admin can, so the 403 is RBAC's doing, not a broken token.
    r = cluster.kubectl(
        "auth",
        "can-i",
        "list",
        "pods",
        "-n",
        namespace,
        f"--as=system:serviceaccount:{namespace}:nobody",
        check=False,
    )
    assert r.stdout.strip() == "no"


def test_cluster_down_then_up_works_again(tmp_path: os.PathLike[str], cluster: Cluster) -> None:
    """A second, throw-away cluster on other ports, driven by the same commands
    `make cluster` / `make cluster-down` run, so the shared one is untouched."""
    env = {
        "SLUICE_CLUSTER_DIR": str(tmp_path / "cluster"),
        "SLUICE_CLUSTER_PORT_BASE": "27600",
        "SLUICE_CLUSTER_NODES": "1",
    }
    run_cluster_script("up", env=env)
    assert "already up" in run_cluster_script("up", env=env)  # idempotent
    run_cluster_script("down", env=env)
    assert not (tmp_path / "cluster").exists()
    out = run_cluster_script("up", env=env)
    assert "up in" in out
    kubeconfig = tmp_path / "cluster" / "kubeconfig"
    r = cluster.kubectl("--kubeconfig", str(kubeconfig), "get", "nodes", "-o", "name")
    assert "node/kwok-node-0" in r.stdout
    run_cluster_script("down", env=env)


def test_kubectl_logs_shows_what_the_simulated_container_prints(
    api_client: client.ApiClient, cluster: Cluster, namespace: str
) -> None:
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    talk = _job("talk", annotations={"sim.sluice.dev/log": "hello\nworld"})
    talk["spec"]["template"]["spec"]["containers"][0]["command"] = ["echo", "hi there"]
    batch.create_namespaced_job(namespace, talk)
    batch.create_namespaced_job(
        namespace,
        _job("bad", {"sim.sluice.dev/outcome": "fail"}, {"sim.sluice.dev/exit-code": "42"}),
    )
    for name in ("talk", "bad"):
        wait_for(lambda n=name: _condition(batch, namespace, n), timeout=60, what=f"job {name}")

    # Served by kwok, as each node's kubelet, from the file sim-logs wrote for the pod.
    assert cluster.kubectl("logs", "-n", namespace, "job/talk").stdout == (
        "+ echo 'hi there'\nhello\nworld\n"
    )
    assert cluster.kubectl("logs", "-n", namespace, "job/bad").stdout == (
        "+ (busybox:1.36)\nsim: failing with exit code 42 (Error)\n"
    )
    # The API server reaches that kubelet on the loopback address only.
    for node in core.list_node().items:
        assert [(a.type, a.address) for a in node.status.addresses] == [("InternalIP", "127.0.0.1")]
        assert node.status.daemon_endpoints.kubelet_endpoint.port > 0
