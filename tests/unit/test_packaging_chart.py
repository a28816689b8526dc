"""The Helm chart, rendered with the real helm (built once, cached): one source
of truth for CRDs and manifests, least-privilege RBAC in both modes, a pod
that meets the restricted Pod Security Standard, and monitoring objects that
appear only when asked for and possible. What it does on a real API server is
in tests/integration/test_helm_install.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from sluice import cli
from sluice.metrics import Metrics
from support import chart
from support.cluster import ROOT

gen = chart.gen_manifests
MONITORING = ("monitoring.coreos.com/v1",)


def _objects(*sets: str, **kwargs: Any) -> list[dict[str, Any]]:
    return chart.docs(chart.render(*sets, **kwargs))


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod = chart.find(objects, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    result: dict[str, Any] = container
    return result


def _rules(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


# --------------------------------------------------------------------------- one source of truth


def test_chart_crds_are_byte_identical_to_the_top_level_crds() -> None:
    top = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    in_chart = {p.name: p.read_bytes() for p in (chart.CHART / "crds").glob("*.yaml")}
    assert top, "no CRDs in crds/?"
    assert in_chart == top, "helm/sluice/crds/ drifted from crds/: run `make manifests`"


def test_committed_manifests_and_values_table_match_a_fresh_render() -> None:
    problems = gen._stale(gen.expected())
    assert problems == [], "".join(problems) + "\nrun `make manifests`"


def test_plain_manifests_are_the_default_render_plus_namespace_and_crds() -> None:
    manifests = ROOT / "manifests"
    objects = [d for f in sorted(manifests.glob("*.yaml")) for d in chart.docs(f.read_text())]
    assert [o["kind"] for o in objects[:3]] == [
        "Namespace",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
    ]
    namespace = objects[0]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    rest = [o for o in objects[3:]]
    assert {o["metadata"].get("namespace", "sluice-system") for o in rest} == {"sluice-system"}
    assert "ClusterRole" in chart.kinds(rest)  # cluster-wide by default


def test_helm_lint_passes_in_every_mode() -> None:
    assert gen.lint() == []


# --------------------------------------------------------------------------- values


def test_every_values_key_has_a_comment_right_above_it() -> None:
    assert gen.undocumented_values() == []


def test_every_values_leaf_is_in_the_install_docs_table() -> None:
    doc = (ROOT / "docs" / "install.md").read_text()
    missing = [path for path, _, _ in gen.values_doc() if f"| `{path}` |" not in doc]
    assert missing == []


def test_watch_namespaces_must_be_exact_names() -> None:
    with pytest.raises(SystemExit, match="does not match pattern"):
        chart.render("watch.namespaces={team-*}")


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ("serviceMonitor.enable=true", "additional properties 'enable' not allowed"),
        ("logLevel=TRACE", "value must be one of"),
        ("replicaCount=0", "minimum"),
        ("statusWriters=0", "minimum"),
        ("statusInterval=-1", "minimum"),
        ("statusInterval=soon", "does not match pattern"),
        ("prometheusRule.reconcile.errorRatio=2", "maximum"),
        ("prometheusRule.degradedFor=abc", "degradedFor.*does not match pattern"),
        ("highAvailability.podAntiAffinity=sometimes", "value must be one of"),
    ],
)
def test_values_schema_rejects_misspelt_keys_and_impossible_values(bad: str, error: str) -> None:
    with pytest.raises(SystemExit, match=error):
        chart.render(bad)


def test_values_schema_accepts_any_kubernetes_field_in_kubernetes_shaped_values() -> None:
    container = _container(
        _objects(
            "resources.limits.ephemeral-storage=1Gi",
            "securityContext.runAsNonRoot=true",
            "livenessProbe.initialDelaySeconds=5",
            "image.tag=1.2",
        )
    )
    assert container["resources"]["limits"]["ephemeral-storage"] == "1Gi"
    assert container["livenessProbe"]["initialDelaySeconds"] == 5
    assert container["image"].endswith(":1.2")


# --------------------------------------------------------------------------- RBAC


REQUIRED = {
    ("batch", "jobs", "list"),
    ("batch", "jobs", "watch"),
    ("batch", "jobs", "create"),
    ("batch", "jobs", "delete"),
    ("sluice.dev", "pipelines", "list"),
    ("sluice.dev", "pipelines", "watch"),
    ("sluice.dev", "tasks", "list"),
    ("sluice.dev", "tasks", "watch"),
    ("sluice.dev", "pipelines/status", "patch"),
    ("sluice.dev", "pipelines/finalizers", "update"),
    ("", "events", "create"),
    ("", "events", "patch"),
    ("", "events", "list"),  # a stuck step's Job's Events (FailedCreate)
    ("", "pods", "list"),  # the pod view; a stuck step's Job's pods, read-only
    ("", "pods", "watch"),
}


def test_cluster_wide_mode_grants_exactly_the_operators_rules_in_one_cluster_role() -> None:
    objects = _objects()
    role = chart.find(objects, "ClusterRole")
    assert _rules(role) == REQUIRED
    binding = chart.find(objects, "ClusterRoleBinding")
    sa = chart.find(objects, "ServiceAccount")["metadata"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["name"], "namespace": sa["namespace"]}
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert "--all-namespaces" in _container(objects)["args"]


def test_namespaced_mode_grants_the_same_rules_with_roles_in_listed_namespaces_only() -> None:
    objects = _objects("watch.namespaces={team-a,team-b}", namespace="ops")
    assert not {"ClusterRole", "ClusterRoleBinding"} & set(chart.kinds(objects))
    workload = [
        o
        for o in objects
        if o["kind"] == "Role" and not o["metadata"]["name"].endswith("-leader-election")
    ]
    assert sorted(o["metadata"]["namespace"] for o in workload) == ["team-a", "team-b"]
    assert all(_rules(o) == REQUIRED for o in workload)
    bindings = [o for o in objects if o["kind"] == "RoleBinding"]
    assert sorted(o["metadata"]["namespace"] for o in bindings) == ["ops", "team-a", "team-b"]
    args = _container(objects)["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    assert "--all-namespaces" not in args


def test_leader_election_lease_rule_is_confined_to_the_release_namespace() -> None:
    objects = _objects(namespace="ops")
    lease = chart.find(objects, "Role")
    assert lease["metadata"]["namespace"] == "ops"
    assert _rules(lease) == {
        ("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")
    }
    assert "--leader-election-namespace=ops" in _container(objects)["args"]


@pytest.mark.parametrize(
    "sets", [(), ("watch.namespaces={a}",)], ids=["cluster-wide", "namespaced"]
)
def test_no_rule_touches_secrets_rbac_or_writes_pods_or_uses_wildcards(
    sets: tuple[str, ...],
) -> None:
    rules = set().union(
        *(_rules(o) for o in _objects(*sets) if o["kind"] in ("Role", "ClusterRole"))
    )
    assert rules
    for group, resource, verb in rules:
        assert "*" not in (group, resource, verb)
        assert resource not in ("secrets", "namespaces", "serviceaccounts")
        if resource == "pods":
            assert group == "" and verb in ("get", "list", "watch")  # read-only
        assert group not in ("rbac.authorization.k8s.io", "apiextensions.k8s.io")
        assert verb not in ("escalate", "bind", "impersonate")
        if group == "sluice.dev" and resource in ("pipelines", "tasks"):
            assert verb in ("list", "watch")


def test_rbac_create_false_renders_no_rbac() -> None:
    objects = _objects("rbac.create=false")
    assert not {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"} & set(
        chart.kinds(objects)
    )


# --------------------------------------------------------------------------- the pod


def test_pod_meets_the_restricted_pod_security_standard() -> None:
    objects = _objects()
    pod = chart.find(objects, "Deployment")["spec"]["template"]["spec"]
    ctx = _container(objects)["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert not ctx.get("privileged")
    assert not any("hostPath" in v for v in pod.get("volumes", []))


def test_container_has_requests_limits_and_probes_on_the_health_endpoint() -> None:
    container = _container(_objects())
    assert set(container["resources"]) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get == {"path": "/healthz", "port": "health"}, probe
    assert f"--health-port={ports['health']}" in container["args"]
    assert f"--metrics-port={ports['metrics']}" in container["args"]


@pytest.mark.parametrize(
    "sets",
    [
        (),
        ("watch.namespaces={a,b}", "logLevel=DEBUG"),
        ("leaderElection.enabled=false",),
        ("statusInterval=0.5", "statusWriters=2"),
    ],
    ids=["defaults", "namespaced-debug", "no-leader-election", "status-tuning"],
)
def test_container_args_are_accepted_by_the_real_cli(sets: tuple[str, ...]) -> None:
    container = _container(_objects(*sets))
    args = cli._parser().parse_args(container["args"])  # exits on an unknown flag
    assert args.command == "run"
    values = dict(s.split("=", 1) for s in sets)
    assert args.log_level == values.get("logLevel", "INFO")
    assert args.leader_elect is (values.get("leaderElection.enabled") != "false")
    assert args.status_interval == float(values.get("statusInterval", 1))
    assert args.status_writers == int(values.get("statusWriters", 4))


def test_metrics_service_selects_the_operator_pod_on_the_metrics_port() -> None:
    objects = _objects()
    service = chart.find(objects, "Service")
    pod_labels = chart.find(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "metrics" and port["name"] == "metrics"


# --------------------------------------------------------------------------- monitoring


@pytest.mark.parametrize(
    ("flag", "kind"),
    [("serviceMonitor.enabled", "ServiceMonitor"), ("prometheusRule.enabled", "PrometheusRule")],
)
def test_monitoring_objects_need_their_flag_and_the_monitoring_api(flag: str, kind: str) -> None:
    assert kind not in chart.kinds(_objects(api_versions=MONITORING))
    assert kind not in chart.kinds(_objects(f"{flag}=true"))
    assert kind in chart.kinds(_objects(f"{flag}=true", api_versions=MONITORING))


def test_prometheus_selection_labels_are_configurable() -> None:
    objects = _objects(
        "serviceMonitor.enabled=true",
        "serviceMonitor.labels.release=prom",
        "prometheusRule.enabled=true",
        "prometheusRule.labels.release=prom",
        "prometheusRule.alertLabels.team=data",
        api_versions=MONITORING,
    )
    monitor = chart.find(objects, "ServiceMonitor")
    rule = chart.find(objects, "PrometheusRule")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert rule["metadata"]["labels"]["release"] == "prom"
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    assert all(a["labels"]["team"] == "data" for a in alerts)
    service = chart.find(objects, "Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True


def test_alerts_cover_degraded_pipelines_retry_surges_and_a_down_or_stuck_operator() -> None:
    rule = chart.find(
        _objects(
            "prometheusRule.enabled=true", "prometheusRule.degradedFor=42m", api_versions=MONITORING
        ),
        "PrometheusRule",
    )
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {
        "SluicePipelineDegraded",
        "SluicePipelineFailed",
        "SluiceTaskRetriesSurging",
        "SluiceStepsStuck",
        "SluiceOperatorDown",
        "SluiceOperatorRestarting",
        "SluiceNoLeader",
        "SluiceNotReconciling",
        "SluiceReconcileErrors",
        "SluiceJobApiErrors",
    } == set(alerts)
    assert alerts["SluicePipelineDegraded"]["for"] == "42m"
    service = chart.find(_objects(), "Service")["metadata"]["name"]
    assert f'job="{service}"' in alerts["SluiceOperatorDown"]["expr"]
    for alert in alerts.values():
        assert alert["labels"]["severity"] in ("warning", "critical")
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
        assert "/docs/runbooks.md#" in alert["annotations"]["runbook_url"]


def test_dashboard_configmap_is_optional_and_labelled_for_the_grafana_sidecar() -> None:
    assert "ConfigMap" not in chart.kinds(_objects())
    cm = chart.find(_objects("grafanaDashboard.enabled=true"), "ConfigMap")
    assert "grafana_dashboard" in cm["metadata"]["labels"]
    board = json.loads(cm["data"]["sluice.json"])
    assert board["uid"] == "sluice-operator" and board["panels"]


def _metric_names(exprs: list[str]) -> set[str]:
    import promql_parser

    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    for e in exprs:
        promql_parser.walk(promql_parser.parse(e.replace("$__rate_interval", "5m")), visit)
    return names


PROCESS = {
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
}


def _declared_metric_names() -> set[str]:
    """Sample names the operator's Metrics can expose (histograms: _bucket/_sum/_count)."""
    registry = CollectorRegistry()
    Metrics(registry)
    names = set()
    for family in registry.collect():
        if family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count")}
        elif family.type == "counter":
            names.add(f"{family.name}_total")
        else:
            names.add(family.name)
    return names


def test_dashboard_panels_parse_and_query_only_declared_metrics() -> None:
    board = json.loads((chart.CHART / "dashboards" / "sluice.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    queried = _metric_names(exprs)
    assert queried - _declared_metric_names() <= PROCESS
    wanted = {  # what the issue asks the dashboard to show
        "sluice_pipelines",
        "sluice_pipeline_degraded",
        "sluice_task_attempts_total",
        "sluice_task_retries_total",
        "sluice_pipeline_run_duration_seconds_bucket",
        "sluice_task_duration_seconds_bucket",
        "sluice_handoff_latency_seconds_bucket",
        "sluice_reconcile_total",
        "sluice_reconcile_errors_total",
    }
    assert wanted <= queried
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def test_alert_expressions_parse_and_query_only_declared_metrics() -> None:
    rule = yaml.safe_load(
        chart.render(
            "prometheusRule.enabled=true",
            api_versions=MONITORING,
            show_only="templates/prometheusrule.yaml",
        )
    )
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert _metric_names(exprs) - _declared_metric_names() <= {"up"} | PROCESS


# --------------------------------------------------------------------------- high availability


def test_several_replicas_without_leader_election_are_refused() -> None:
    with pytest.raises(SystemExit, match=r"replicaCount=2 needs leaderElection\.enabled=true"):
        chart.render("replicaCount=2", "leaderElection.enabled=false")
    chart.render("replicaCount=1", "leaderElection.enabled=false")  # one pod: fine


def test_ha_adds_a_disruption_budget_anti_affinity_and_zone_spread() -> None:
    single = _objects()
    assert "PodDisruptionBudget" not in chart.kinds(single)
    pod = chart.find(single, "Deployment")["spec"]["template"]["spec"]
    assert "affinity" not in pod and "topologySpreadConstraints" not in pod

    objects = _objects("replicaCount=2")
    deployment = chart.find(objects, "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    pdb = chart.find(objects, "PodDisruptionBudget")
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}
    pod = deployment["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"

    hard = chart.find(
        _objects("replicaCount=3", "highAvailability.podAntiAffinity=hard"), "Deployment"
    )
    anti = hard["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert list(anti) == ["requiredDuringSchedulingIgnoredDuringExecution"]
    own = chart.find(_objects("replicaCount=2", "affinity.nodeAffinity.x=y"), "Deployment")
    assert own["spec"]["template"]["spec"]["affinity"] == {"nodeAffinity": {"x": "y"}}


def test_network_policy_is_optional_and_opens_only_the_operators_ports() -> None:
    assert "NetworkPolicy" not in chart.kinds(_objects())
    policy = chart.find(_objects("networkPolicy.enabled=true"), "NetworkPolicy")
    ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert ports == ["metrics", "health"]
    (egress,) = policy["spec"]["egress"]
    assert [p["port"] for p in egress["ports"]] == [443, 6443] and "to" not in egress

    objects = _objects(
        "networkPolicy.enabled=true",
        "webhook.enabled=true",
        "networkPolicy.apiServer.cidrs={10.0.0.1/32}",
        "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=monitoring",
    )
    policy = chart.find(objects, "NetworkPolicy")
    container_ports = {p["name"] for p in _container(objects)["ports"]}
    ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert ports == ["metrics", "health", "webhook"] and set(ports) <= container_ports
    assert policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "team": "monitoring"
    }
    assert policy["spec"]["egress"][0]["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    deployment = chart.find(objects, "Deployment")
    assert policy["spec"]["podSelector"] == deployment["spec"]["selector"]


def test_chart_metadata_names_home_sources_icon_and_maintainers() -> None:
    meta = yaml.safe_load((chart.CHART / "Chart.yaml").read_text())
    assert meta["home"].startswith("https://")
    assert meta["sources"] and all(s.startswith("https://") for s in meta["sources"])
    assert meta["icon"].startswith("https://") and meta["icon"].endswith("/helm/sluice/icon.svg")
    assert (chart.CHART / "icon.svg").exists()
    assert meta["maintainers"] and all(m["name"] for m in meta["maintainers"])


# --------------------------------------------------------------------------- admission webhook


def test_webhook_is_off_by_default_so_plain_manifests_carry_no_private_key() -> None:
    assert not {"Secret", "ValidatingWebhookConfiguration"} & set(chart.kinds(_objects()))
    for f in (ROOT / "manifests").rglob("*.yaml"):
        assert "PRIVATE KEY" not in f.read_text() and "tls.key" not in f.read_text(), f


@pytest.mark.parametrize("watched", [(), ("team-b", "team-a")], ids=["cluster-wide", "namespaced"])
def test_webhook_configuration_matches_what_the_operator_serves(watched: tuple[str, ...]) -> None:
    from sluice.shell import admission

    sets = ["webhook.enabled=true"]
    if watched:
        sets.append(f"watch.namespaces={{{','.join(watched)}}}")
    objects = _objects(*sets, namespace="ops")
    config = chart.find(objects, "ValidatingWebhookConfiguration")
    service = chart.find(objects, "Service", "sluice-webhook")
    hooks = {w["name"]: w for w in config["webhooks"]}
    assert set(hooks) == {admission.PIPELINE_WEBHOOK, admission.TASK_WEBHOOK}
    paths = {
        admission.PIPELINE_WEBHOOK: admission.PIPELINE_PATH,
        admission.TASK_WEBHOOK: admission.TASK_PATH,
    }
    for name, hook in hooks.items():
        assert hook["clientConfig"]["service"] == {
            "name": service["metadata"]["name"],
            "namespace": "ops",
            "path": paths[name],
            "port": 443,
        }
        assert hook["failurePolicy"] == admission.FAILURE_POLICY
        assert hook["timeoutSeconds"] == admission.TIMEOUT_SECONDS
        assert hook["namespaceSelector"] == admission.namespace_selector(list(watched))
        assert hook["sideEffects"] == "None"
    container = _container(objects)
    (port,) = [p for p in container["ports"] if p["name"] == "webhook"]
    assert service["spec"]["ports"] == [
        {"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"}
    ]
    assert port["containerPort"] == admission.CLUSTER_PORT
    # Only a leading replica serves the webhook: Ready means it answers there.
    assert container["readinessProbe"]["tcpSocket"] == {"port": "webhook"}
    args = cli._parser().parse_args(container["args"])
    assert args.admission == "cluster" and args.webhook_port == admission.CLUSTER_PORT
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert str(args.webhook_cert_file).startswith(mounts["webhook-tls"]["mountPath"])
    assert mounts["webhook-tls"]["readOnly"] is True
    # The metrics ServiceMonitor must not pick up the webhook Service.
    monitor = chart.find(
        _objects("webhook.enabled=true", "serviceMonitor.enabled=true", api_versions=MONITORING),
        "ServiceMonitor",
    )
    wanted = monitor["spec"]["selector"]["matchLabels"].items()
    assert not wanted <= service["metadata"]["labels"].items()


def test_chart_generated_certificate_is_valid_for_the_webhook_service_and_its_ca_bundle() -> None:
    import base64

    from cryptography import x509

    objects = _objects("webhook.enabled=true", "watch.namespaces={a}", namespace="ops")
    secret = chart.find(objects, "Secret")
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    assert base64.b64decode(secret["data"]["tls.key"]).startswith(b"-----BEGIN")
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "sluice-webhook.ops.svc" in names.get_values_for_type(x509.DNSName)
    config = chart.find(objects, "ValidatingWebhookConfiguration")
    assert {w["clientConfig"]["caBundle"] for w in config["webhooks"]} == {secret["data"]["ca.crt"]}
    deployment = chart.find(objects, "Deployment")
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert {"name": "webhook-tls", "secret": {"secretName": secret["metadata"]["name"]}} in volumes


def test_cert_manager_mode_needs_cert_manager_and_lets_it_issue_and_inject() -> None:
    with pytest.raises(SystemExit, match="needs cert-manager"):
        chart.render("webhook.enabled=true", "webhook.certManager.enabled=true")
    objects = _objects(
        "webhook.enabled=true",
        "webhook.certManager.enabled=true",
        api_versions=("cert-manager.io/v1",),
        namespace="ops",
    )
    assert "Secret" not in chart.kinds(objects)  # cert-manager writes it
    certificate = chart.find(objects, "Certificate")
    assert "sluice-webhook.ops.svc" in certificate["spec"]["dnsNames"]
    assert certificate["spec"]["secretName"] == "sluice-webhook-tls"
    assert certificate["spec"]["issuerRef"] == {"kind": "Issuer", "name": "sluice-selfsigned"}
    config = chart.find(objects, "ValidatingWebhookConfiguration")
    assert (
        config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "ops/sluice-webhook"
    )
    assert all("caBundle" not in w["clientConfig"] for w in config["webhooks"])
    own = _objects(
        "webhook.enabled=true",
        "webhook.certManager.enabled=true",
        "webhook.certManager.issuerRef.kind=ClusterIssuer",
        "webhook.certManager.issuerRef.name=corp-ca",
        api_versions=("cert-manager.io/v1",),
    )
    assert "Issuer" not in chart.kinds(own)
    assert chart.find(own, "Certificate")["spec"]["issuerRef"] == {
        "kind": "ClusterIssuer",
        "name": "corp-ca",
    }
