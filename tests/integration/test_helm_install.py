"""The Helm chart, installed for real on the local control plane.

What `helm template` renders is applied server-side, as with the plain
manifests. The operator then runs authenticated as the chart's ServiceAccount
(a bound token from the TokenRequest API) against the RBAC-enforcing API
server: whatever the chart's RBAC lacks makes a pipeline stall, whatever it
grants too much shows in `kubectl auth can-i`.

The cluster-wide run watches every namespace, so it starts and stops within
its fixture: no other test's operator runs at the same time (pytest runs
tests one after the other).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from support import chart
from support.cluster import ROOT, Cluster
from support.operator import OperatorProcess, free_port
from support.wait import wait_for

pytestmark = pytest.mark.cluster

GROUP, VERSION = "sluice.dev", "v1alpha1"
BUSYBOX = "busybox:1.36"


# --------------------------------------------------------------------------- helpers


def _create_namespace(api_client: client.ApiClient, prefix: str) -> str:
    core = client.CoreV1Api(api_client)
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for(
        lambda: any(
            sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items
        ),
        timeout=60,
        what=f"the default ServiceAccount in {name}",
    )
    return name


def _delete_namespaces(api_client: client.ApiClient, *names: str) -> None:
    core = client.CoreV1Api(api_client)
    for name in names:
        try:
            core.delete_namespace(name, propagation_policy="Background")
        except client.ApiException as e:
            if e.status != 404:
                raise


def _install(cluster: Cluster, release: str, namespace: str, *sets: str) -> list[dict[str, Any]]:
    """Render the chart (CRDs included) and apply it server-side; return the objects."""
    rendered = chart.render(*sets, release=release, namespace=namespace, include_crds=True)
    chart.apply(cluster, rendered)
    return chart.docs(rendered)


def _custom(api_client: client.ApiClient, ns: str, plural: str, body: dict[str, Any]) -> None:
    client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        GROUP, VERSION, ns, plural, body
    )


def _task(api_client: client.ApiClient, ns: str, name: str, spec: dict[str, Any]) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Task",
        "metadata": {"name": name},
        "spec": spec,
    }
    _custom(api_client, ns, "tasks", body)


def _pipeline(api_client: client.ApiClient, ns: str, name: str, tasks: list[Any]) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Pipeline",
        "metadata": {"name": name},
        "spec": {"tasks": tasks},
    }
    _custom(api_client, ns, "pipelines", body)


def _two_steps(api_client: client.ApiClient, ns: str, name: str) -> None:
    """Task `step` and a Pipeline a -> b using it."""
    _task(api_client, ns, "step", {"image": BUSYBOX})
    _pipeline(
        api_client,
        ns,
        name,
        [
            {"name": "a", "taskRef": {"name": "step"}},
            {"name": "b", "taskRef": {"name": "step"}, "dependsOn": ["a"]},
        ],
    )


def _phase(api_client: client.ApiClient, ns: str, name: str) -> str | None:
    body = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        GROUP, VERSION, ns, "pipelines", name
    )
    return (body.get("status") or {}).get("phase")


def _wait_phase(
    api_client: client.ApiClient, ns: str, name: str, phase: str, op: OperatorProcess
) -> None:
    try:
        wait_for(
            lambda: _phase(api_client, ns, name) == phase,
            timeout=60,
            what=f"pipeline {ns}/{name} to be {phase}",
        )
    except AssertionError as e:
        raise AssertionError(
            f"{e}; phase {_phase(api_client, ns, name)}; operator log:\n{op.log()}"
        ) from None


def _lease_args(release_ns: str) -> list[str]:
    """The Lease in the release namespace, as in the chart's pod (where it is the
    pod's own namespace): the only place the chart lets it hold one."""
    return ["--leader-election-namespace", release_ns]


def _service_account(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return chart.find(objects, "ServiceAccount")


_EMPTY_UNTIL_SOMETHING_HAPPENS = {"sluice_steps_stuck"}
"""Gauges with a sample only while there is something to count (a stuck step, by reason):
in a scrape of a healthy install they are declared (`# TYPE`) without samples."""


def _sample_names(scrape: str) -> set[str]:
    names = {
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for line in scrape.splitlines()
        if line and not line.startswith("#")
    }
    declared = {line.split()[2] for line in scrape.splitlines() if line.startswith("# TYPE ")}
    return names | (declared & _EMPTY_UNTIL_SOMETHING_HAPPENS)


def _serious_log_lines(log: str) -> list[str]:
    """Log lines that mean the operator could not do its job (an RBAC refusal
    shows as `... is forbidden: User "system:serviceaccount:..." cannot ...`)."""
    return [
        line
        for line in log.splitlines()
        if " ERROR " in line
        or " CRITICAL " in line
        or "forbidden" in line.lower()
        or " 403" in line
        or "Not enough permissions" in line
    ]


@dataclass
class Run:
    """What one installation and operator run left behind, for the tests to check."""

    release: str
    release_ns: str
    watched: list[str]
    objects: list[dict[str, Any]]
    kubeconfig: Path
    username: str
    phases: dict[str, str | None]
    metrics: str
    log: str


# --------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def cluster_wide_run(
    cluster: Cluster, api_client: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    """Default values (cluster-wide, ClusterRole); a pipeline in an unrelated namespace."""
    tmp = tmp_path_factory.mktemp("cluster-wide")
    release_ns = _create_namespace(api_client, "t-helm-cw")
    workload_ns = _create_namespace(api_client, "t-helm-cw-work")
    release = f"sluice-{uuid.uuid4().hex[:6]}"
    objects: list[dict[str, Any]] = []
    try:
        objects = _install(cluster, release, release_ns)
        sa = _service_account(objects)["metadata"]["name"]
        kubeconfig = chart.service_account_kubeconfig(
            api_client, cluster, release_ns, sa, tmp / "sa.kubeconfig"
        )
        whoami = subprocess.run(
            [
                str(cluster.kubectl_path),
                "--kubeconfig",
                str(kubeconfig),
                "auth",
                "whoami",
                "-o",
                "json",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        username = json.loads(whoami.stdout)["status"]["userInfo"]["username"]
        op = OperatorProcess(  # all namespaces
            kubeconfig, tmp / "operator.log", extra_args=_lease_args(release_ns)
        ).start()
        try:
            _two_steps(api_client, workload_ns, "hello")
            _wait_phase(api_client, workload_ns, "hello", "Succeeded", op)
            metrics = op.metrics()
        finally:
            op.stop()
        yield Run(
            release,
            release_ns,
            [workload_ns],
            objects,
            kubeconfig,
            username,
            {"hello": "Succeeded"},
            metrics,
            op.log(),
        )
    finally:
        chart.delete_cluster_scoped(cluster, objects)
        _delete_namespaces(api_client, release_ns, workload_ns)


@pytest.fixture(scope="module")
def namespaced_run(
    cluster: Cluster, api_client: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    """watch.namespaces=[one namespace] (Roles only). There the operator runs a
    pipeline that succeeds, one that ends Degraded after a retry, and one whose
    Job creation a ResourceQuota refuses: every metric gets a sample."""
    tmp = tmp_path_factory.mktemp("namespaced")
    release_ns = _create_namespace(api_client, "t-helm-ns")
    watched = _create_namespace(api_client, "t-helm-ns-work")
    release = f"sluice-{uuid.uuid4().hex[:6]}"
    try:
        objects = _install(cluster, release, release_ns, f"watch.namespaces={{{watched}}}")
        sa = _service_account(objects)["metadata"]["name"]
        kubeconfig = chart.service_account_kubeconfig(
            api_client, cluster, release_ns, sa, tmp / "sa.kubeconfig"
        )
        op = OperatorProcess(
            kubeconfig,
            tmp / "operator.log",
            namespaces=[watched],
            extra_args=_lease_args(release_ns),
        ).start()
        try:
            _two_steps(api_client, watched, "hello")
            _task(
                api_client,
                watched,
                "broken",
                {
                    "image": BUSYBOX,
                    "podTemplate": {"metadata": {"labels": {"sim.sluice.dev/outcome": "fail"}}},
                    "retry": {"limit": 1, "backoff": {"initialSeconds": 0}},
                },
            )
            _pipeline(
                api_client,
                watched,
                "degraded",
                [
                    {"name": "x", "taskRef": {"name": "broken"}},
                ],
            )
            _wait_phase(api_client, watched, "hello", "Succeeded", op)
            _wait_phase(api_client, watched, "degraded", "Degraded", op)
            # A quota that allows no more Jobs: the next Job create is refused (403).
            client.CoreV1Api(api_client).create_namespaced_resource_quota(
                watched,
                client.V1ResourceQuota(
                    metadata=client.V1ObjectMeta(name="no-more-jobs"),
                    spec=client.V1ResourceQuotaSpec(hard={"count/jobs.batch": "0"}),
                ),
            )
            _pipeline(api_client, watched, "refused", [{"name": "a", "taskRef": {"name": "step"}}])

            def refused() -> str | None:
                m = op.metrics()
                return m if "sluice_job_api_errors_total{" in m else None

            metrics = wait_for(refused, timeout=30, what="a refused Job create in the metrics")
        finally:
            op.stop()
        phases = {p: _phase(api_client, watched, p) for p in ("hello", "degraded", "refused")}
        yield Run(
            release,
            release_ns,
            [watched],
            objects,
            kubeconfig,
            f"system:serviceaccount:{release_ns}:{sa}",
            phases,
            metrics,
            op.log(),
        )
    finally:
        _delete_namespaces(api_client, release_ns, watched)


@pytest.fixture(params=["cluster_wide_run", "namespaced_run"])
def run(request: pytest.FixtureRequest) -> Run:
    result: Run = request.getfixturevalue(request.param)
    return result


# --------------------------------------------------------------------------- tests


def test_cluster_wide_install_lets_its_service_account_run_a_pipeline_in_any_namespace(
    cluster_wide_run: Run,
) -> None:
    r = cluster_wide_run
    assert r.username == f"system:serviceaccount:{r.release_ns}:{r.release}"
    assert {"ClusterRole", "ClusterRoleBinding"} <= set(chart.kinds(r.objects))
    assert r.phases == {"hello": "Succeeded"}
    assert _serious_log_lines(r.log) == [], r.log


def test_namespaced_install_uses_roles_only_and_its_service_account_runs_pipelines_there(
    namespaced_run: Run,
    cluster: Cluster,
) -> None:
    r = namespaced_run
    assert not {"ClusterRole", "ClusterRoleBinding"} & set(chart.kinds(r.objects))
    roles = [o for o in r.objects if o["kind"] == "Role"]
    assert sorted(o["metadata"]["namespace"] for o in roles) == sorted([*r.watched, r.release_ns])
    assert r.phases["hello"] == "Succeeded"
    assert r.phases["degraded"] == "Degraded"
    assert r.phases["refused"] in (None, "Pending", "Running")  # its Job was refused
    assert 'sluice_job_api_errors_total{code="403",operation="create"}' in r.metrics
    # The only refusal in the log is the quota's, not RBAC's.
    assert [line for line in _serious_log_lines(r.log) if "quota" not in line] == [], r.log


def test_service_account_may_do_what_the_operator_needs(run: Run, cluster: Cluster) -> None:
    ns = run.watched[0]
    needed = [
        ("list", "jobs.batch"),
        ("watch", "jobs.batch"),
        ("create", "jobs.batch"),
        ("delete", "jobs.batch"),
        ("list", "pipelines.sluice.dev"),
        ("watch", "pipelines.sluice.dev"),
        ("list", "tasks.sluice.dev"),
        ("watch", "tasks.sluice.dev"),
        ("patch", "pipelines.sluice.dev/status"),
        ("update", "pipelines.sluice.dev/finalizers"),
        ("create", "events"),
        ("patch", "events"),
    ]
    missing = [
        f"{verb} {res}"
        for verb, res in needed
        if not chart.can_i(cluster, run.kubeconfig, verb, res, "-n", ns)
    ]
    assert missing == []
    for verb in ("get", "create", "update"):
        assert chart.can_i(
            cluster, run.kubeconfig, verb, "leases.coordination.k8s.io", "-n", run.release_ns
        )


def test_service_account_may_not_read_secrets_create_pods_delete_pipelines_or_grant_rbac(
    run: Run,
    cluster: Cluster,
) -> None:
    forbidden = [
        ("get", "secrets"),
        ("list", "secrets"),
        ("watch", "secrets"),
        ("create", "pods"),
        ("create", "pods/exec"),
        ("get", "jobs.batch"),
        ("update", "jobs.batch"),
        ("patch", "jobs.batch"),
        ("delete", "pipelines.sluice.dev"),
        ("delete", "tasks.sluice.dev"),
        ("create", "pipelines.sluice.dev"),
        ("patch", "pipelines.sluice.dev"),
        ("update", "tasks.sluice.dev"),
        ("deletecollection", "pipelines.sluice.dev"),
        ("create", "roles.rbac.authorization.k8s.io"),
        ("create", "rolebindings.rbac.authorization.k8s.io"),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
        ("escalate", "roles.rbac.authorization.k8s.io"),
        ("bind", "clusterroles.rbac.authorization.k8s.io"),
        ("impersonate", "serviceaccounts"),
        ("create", "serviceaccounts/token"),
        ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ]
    allowed = [
        f"{verb} {res} in {ns}"
        for ns in (*run.watched, run.release_ns)
        for verb, res in forbidden
        if chart.can_i(cluster, run.kubeconfig, verb, res, "-n", ns)
    ]
    assert allowed == []
    assert not chart.can_i(
        cluster, run.kubeconfig, "delete", "leases.coordination.k8s.io", "-n", run.release_ns
    )
    assert not chart.can_i(
        cluster, run.kubeconfig, "create", "leases.coordination.k8s.io", "-n", run.watched[0]
    )


def test_namespaced_service_account_has_no_access_outside_its_namespaces(
    namespaced_run: Run, cluster: Cluster, namespace: str
) -> None:
    kc = namespaced_run.kubeconfig
    assert not chart.can_i(cluster, kc, "list", "jobs.batch", "-n", namespace)
    assert not chart.can_i(cluster, kc, "list", "pipelines.sluice.dev", "-n", namespace)
    assert not chart.can_i(cluster, kc, "list", "jobs.batch", "--all-namespaces")
    assert not chart.can_i(cluster, kc, "list", "namespaces")
    # Its own release namespace holds only its Lease.
    assert not chart.can_i(cluster, kc, "list", "jobs.batch", "-n", namespaced_run.release_ns)


def _promql_metric_names(exprs: list[str]) -> set[str]:
    import promql_parser

    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    for e in exprs:
        promql_parser.walk(promql_parser.parse(e), visit)
    return names


def _dashboard_exprs() -> list[str]:
    board = json.loads((chart.CHART / "dashboards" / "sluice.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    return [re.sub(r"\$__(rate_interval|interval|range)", "5m", e) for e in exprs]


def _alert_exprs() -> list[str]:
    rendered = chart.render(
        "prometheusRule.enabled=true",
        api_versions=("monitoring.coreos.com/v1",),
        show_only="templates/prometheusrule.yaml",
    )
    rule = yaml.safe_load(rendered)
    return [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]


def test_every_metric_the_dashboard_queries_is_in_a_real_scrape(namespaced_run: Run) -> None:
    scraped = _sample_names(namespaced_run.metrics)
    queried = _promql_metric_names(_dashboard_exprs())
    assert queried, "the dashboard queries nothing?"
    assert sorted(queried - scraped) == []
    histograms = {n.removesuffix("_bucket") for n in queried if n.endswith("_bucket")}
    assert histograms
    for h in histograms:
        assert {f"{h}_bucket", f"{h}_sum", f"{h}_count"} <= scraped, h


def test_every_metric_the_alerts_query_is_in_a_real_scrape(namespaced_run: Run) -> None:
    scraped = _sample_names(namespaced_run.metrics)
    queried = _promql_metric_names(_alert_exprs()) - {"up"}  # `up` is Prometheus' own
    assert sorted(queried - scraped) == []


def test_operator_pod_is_admitted_where_the_restricted_pod_security_standard_is_enforced(
    cluster: Cluster, api_client: client.ApiClient, namespace: str
) -> None:
    cluster.kubectl(
        "label",
        "namespace",
        namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )
    core = client.CoreV1Api(api_client)
    # The label is enforced here: a pod with default security settings is refused.
    with pytest.raises(client.ApiException) as refused:
        core.create_namespaced_pod(
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "plain"},
                "spec": {"containers": [{"name": "c", "image": BUSYBOX}]},
            },
        )
    assert refused.value.status == 403 and "PodSecurity" in str(refused.value.body)

    release = f"sluice-{uuid.uuid4().hex[:6]}"
    _install(cluster, release, namespace, f"watch.namespaces={{{namespace}}}")
    selector = f"app.kubernetes.io/instance={release}"

    def running() -> bool:
        pods = core.list_namespaced_pod(namespace, label_selector=selector).items
        return any(p.status.phase == "Running" for p in pods)

    try:
        wait_for(running, timeout=60, what="the operator pod to run")
    except AssertionError:
        events = cluster.kubectl("get", "events", "-n", namespace).stdout
        raise AssertionError(f"operator pod not running; events:\n{events}") from None


def test_helm_install_upgrade_and_uninstall_keep_the_crds_and_the_users_pipelines(
    cluster: Cluster, api_client: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    env = {  # keep helm's own cache and config out of the user's home
        **os.environ,
        "HELM_CACHE_HOME": str(tmp_path / "cache"),
        "HELM_CONFIG_HOME": str(tmp_path / "config"),
        "HELM_DATA_HOME": str(tmp_path / "data"),
    }

    def helm(*args: str) -> str:
        r = subprocess.run(
            [
                str(chart.gen_manifests.helm_binary()),
                "--kubeconfig",
                str(cluster.kubeconfig),
                "--namespace",
                namespace,
                *args,
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        assert r.returncode == 0, f"helm {' '.join(args)}:\n{r.stdout}{r.stderr}"
        return r.stdout

    release = f"sluice-{uuid.uuid4().hex[:6]}"
    selector = f"app.kubernetes.io/instance={release}"
    notes = helm(
        "install",
        release,
        str(chart.CHART),
        "--wait",
        "--timeout",
        "90s",
        "--set",
        f"watch.namespaces={{{namespace}}}",
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "prometheusRule.enabled=true",
    )
    # Helm asked this API server: it serves no monitoring.coreos.com/v1, so the
    # flags alone create nothing, and NOTES.txt says so.
    words = " ".join(notes.split())
    assert "no ServiceMonitor was created" in words
    assert "no PrometheusRule was created" in words
    _two_steps(api_client, namespace, "kept")  # a user's objects (no operator runs here)

    helm(
        "upgrade",
        release,
        str(chart.CHART),
        "--reuse-values",
        "--set",
        "logLevel=DEBUG",
        "--wait",
        "--timeout",
        "90s",
    )
    apps = client.AppsV1Api(api_client)
    (deployment,) = apps.list_namespaced_deployment(namespace, label_selector=selector).items
    assert "--log-level=DEBUG" in deployment.spec.template.spec.containers[0].args

    helm("uninstall", release, "--wait", "--timeout", "90s")
    assert apps.list_namespaced_deployment(namespace, label_selector=selector).items == []
    rbac = client.RbacAuthorizationV1Api(api_client)
    assert rbac.list_namespaced_role(namespace, label_selector=selector).items == []
    crds = client.ApiextensionsV1Api(api_client)
    for name in ("pipelines.sluice.dev", "tasks.sluice.dev"):
        assert crds.read_custom_resource_definition(name).metadata.deletion_timestamp is None
    assert _phase(api_client, namespace, "kept") is None  # still there, untouched


def test_plain_manifests_apply_as_committed_and_the_operator_pod_runs(
    cluster: Cluster, api_client: client.ApiClient
) -> None:
    """`kubectl apply --server-side -f manifests/`, exactly as docs/install.md says."""
    core = client.CoreV1Api(api_client)
    ns = "sluice-system"

    def gone() -> bool:
        try:
            core.read_namespace(ns)
        except client.ApiException as e:
            if e.status == 404:
                return True
            raise
        return False

    wait_for(gone, timeout=90, what=f"a previous run's {ns} to be deleted")
    objects = [
        d for f in sorted((ROOT / "manifests").glob("*.yaml")) for d in chart.docs(f.read_text())
    ]
    try:
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "manifests/")
        labels = core.read_namespace(ns).metadata.labels
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        wait_for(
            lambda: any(
                p.status.phase == "Running"
                for p in core.list_namespaced_pod(
                    ns, label_selector="app.kubernetes.io/instance=sluice"
                ).items
            ),
            timeout=60,
            what="the operator pod from manifests/ to run",
        )
    finally:
        chart.delete_cluster_scoped(cluster, objects)
        cluster.kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=false")


def test_a_replica_waiting_for_the_lease_passes_the_charts_probes_and_then_leads(
    cluster: Cluster, api_client: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    """The chart probes /healthz on the health port. A standby replica (another
    one holds the Lease) runs everything but the controller, kopf's liveness
    endpoint included, so it answers there from the start (or its startup probe
    would restart it over and over), and goes on answering once it leads."""
    coord = client.CoordinationV1Api(api_client)
    now = datetime.now(UTC)
    coord.create_namespaced_lease(
        namespace,
        client.V1Lease(
            metadata=client.V1ObjectMeta(name="held"),
            spec=client.V1LeaseSpec(
                holder_identity="another-replica",
                lease_duration_seconds=3600,
                acquire_time=now,
                renew_time=now,
            ),
        ),
    )
    port = free_port()
    op = OperatorProcess(
        cluster.kubeconfig,
        tmp_path / "operator.log",
        namespaces=[namespace],
        extra_args=[
            "--leader-election-namespace",
            namespace,
            "--leader-election-id",
            "held",
            "--lease-duration",
            "30",
            "--health-port",
            str(port),
        ],
    ).start()

    def healthz() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                return str(r.read().decode()) if r.status == 200 else None
        except OSError:
            return None

    try:
        wait_for(healthz, timeout=30, what="/healthz while waiting for the Lease")
        wait_for(lambda: "another replica leads" in op.log(), timeout=30, what="a waiting replica")
        assert healthz() is not None  # still waiting, still healthy
        coord.delete_namespaced_lease("held", namespace)  # the leader is gone
        wait_for(lambda: "leading (lease" in op.log(), timeout=30, what="the leading log line")
        assert healthz() is not None  # leading, still healthy
    finally:
        op.stop()


def _review(namespace: str, name: str, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    pipeline = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Pipeline",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"tasks": tasks},
    }
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": GROUP, "version": VERSION, "kind": "Pipeline"},
            "resource": {"group": GROUP, "version": VERSION, "resource": "pipelines"},
            "requestKind": {"group": GROUP, "version": VERSION, "kind": "Pipeline"},
            "requestResource": {"group": GROUP, "version": VERSION, "resource": "pipelines"},
            "name": name,
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "someone"},
            "object": pipeline,
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def test_webhook_wiring_is_accepted_and_the_operator_answers_with_the_charts_certificate(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    """What the API server would do, short of calling the Service (this cluster
    has no Service network): accept the chart's webhook objects (server-side dry
    run), then reach the operator over TLS that verifies the chart's serving
    certificate for the Service's DNS name against the caBundle it registers."""
    release = f"sluice-{uuid.uuid4().hex[:6]}"
    rendered = chart.render(
        "webhook.enabled=true",
        f"watch.namespaces={{{namespace}}}",
        release=release,
        namespace=namespace,
    )
    cluster.kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", stdin=rendered)
    objects = chart.docs(rendered)
    secret = chart.find(objects, "Secret")["data"]
    config = chart.find(objects, "ValidatingWebhookConfiguration")
    hook = next(w for w in config["webhooks"] if w["name"].startswith("validate.pipelines"))
    service = hook["clientConfig"]["service"]
    for key in ("tls.crt", "tls.key", "ca.crt"):
        (tmp_path / key).write_bytes(base64.b64decode(secret[key]))
    port = free_port()
    op = OperatorProcess(
        cluster.kubeconfig,
        tmp_path / "operator.log",
        namespaces=[namespace],
        extra_args=[
            *_lease_args(namespace),
            "--admission",
            "cluster",
            "--webhook-port",
            str(port),
            "--webhook-cert-file",
            str(tmp_path / "tls.crt"),
            "--webhook-key-file",
            str(tmp_path / "tls.key"),
        ],
    ).start()
    tls = ssl.create_default_context(
        cadata=base64.b64decode(hook["clientConfig"]["caBundle"]).decode()
    )
    dns_name = f"{service['name']}.{service['namespace']}.svc"

    def post(review: dict[str, Any]) -> dict[str, Any] | None:
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            return None  # not serving yet
        conn = http.client.HTTPSConnection(dns_name, port, timeout=10)
        conn.sock = tls.wrap_socket(raw, server_hostname=dns_name)
        conn.request(
            "POST", service["path"], json.dumps(review), {"Content-Type": "application/json"}
        )
        answer: dict[str, Any] = json.loads(conn.getresponse().read())
        conn.close()
        return answer

    try:
        bad = [  # a cycle: what only the webhook (not the CRD schema) can refuse
            {"name": "a", "task": {"image": BUSYBOX}, "dependsOn": ["b"]},
            {"name": "b", "task": {"image": BUSYBOX}, "dependsOn": ["a"]},
        ]
        refused = wait_for(
            lambda: post(_review(namespace, "loop", bad)),
            timeout=30,
            what="the webhook to answer over TLS",
        )
        assert refused["response"]["allowed"] is False, refused
        assert "cycle" in refused["response"]["status"]["message"]
        good = [{"name": "a", "task": {"image": BUSYBOX}}]
        allowed = post(_review(namespace, "fine", good))
        assert allowed is not None and allowed["response"]["allowed"] is True, allowed
    finally:
        op.stop()
