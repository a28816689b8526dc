"""The chart's dashboard and alerts against a real Prometheus (the pinned
build) scraping a live operator on the real control plane: every dashboard
query and variable, and every alert expression, evaluates through the HTTP API
without error or warning, and the numbers match the cluster. Also
`promtool check metrics` on the live scrape."""

from __future__ import annotations

import os
import re
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from support import prometheus as prom
from support.cluster import Cluster
from support.operator import OperatorProcess
from support.pipelines import Sluice, sim
from support.wait import wait_for

pytestmark = pytest.mark.cluster

BUSYBOX = "busybox:1.36"
# What the chart renders for release "sluice" in namespace "sluice-system":
# the scrape job is the metrics Service's name, the target carries the
# operator's namespace.
JOB = "sluice-metrics"
OPERATOR_NAMESPACE = "sluice-system"
RATE_INTERVAL = "30s"


@dataclass
class Monitored:
    namespace: str
    sluice: Sluice
    operator: OperatorProcess
    prometheus: prom.PrometheusServer

    @property
    def instance(self) -> str:
        return f"127.0.0.1:{self.operator.metrics_port}"


@pytest.fixture(scope="module")
def monitored(
    cluster: Cluster, crds: None, api_client: client.ApiClient, tmp_path_factory: Any
) -> Iterator[Monitored]:
    """An operator of its own watching one fresh namespace (not e2e-*, so the
    shared operator leaves it alone), and a Prometheus scraping it."""
    core = client.CoreV1Api(api_client)
    ns = f"mon-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    wait_for(
        lambda: any(
            sa.metadata.name == "default" for sa in core.list_namespaced_service_account(ns).items
        ),
        timeout=60,
        what=f"the default ServiceAccount in {ns}",
    )
    workdir: Path = tmp_path_factory.mktemp("monitoring")
    op = OperatorProcess(cluster.kubeconfig, workdir / "operator.log", namespaces=[ns]).start()
    server = prom.PrometheusServer(
        workdir / "prometheus",
        targets=[f"127.0.0.1:{op.metrics_port}"],
        job=JOB,
        target_labels={"namespace": OPERATOR_NAMESPACE},
        rule_groups=prom.rule_groups(),
    )
    try:
        server.start()
        yield Monitored(ns, Sluice(api_client, ns), op, server)
    finally:
        server.stop()
        op.stop()
        core.delete_namespace(ns, propagation_policy="Background")


def _dashboard_expr(expr: str, m: Monitored) -> str:
    return (
        expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("$job", JOB)
        .replace("$instance", ".+")
        .replace("$namespace", m.namespace)
        .replace("$pipeline", ".*")
    )


def _cluster_phases(m: Monitored) -> dict[str, float]:
    phases: dict[str, float] = {}
    for p in m.sluice.custom.list_namespaced_custom_object(
        "sluice.dev", "v1alpha1", m.namespace, "pipelines"
    )["items"]:
        phase = (p.get("status") or {}).get("phase", "")
        phases[phase] = phases.get(phase, 0) + 1
    return phases


def _dashboard_phases(m: Monitored) -> dict[str, float]:
    expr = _dashboard_expr(prom.dashboard_queries()["Pipelines by phase/A"], m)
    return {k: v for k, v in m.prometheus.values(expr, "phase").items() if v}


def _scraped_phases_match_the_cluster(m: Monitored) -> bool:
    return _dashboard_phases(m) == _cluster_phases(m)


def test_live_scrape_passes_promtool_check_metrics(monitored: Monitored) -> None:
    r = prom.promtool_stdin(monitored.operator.metrics(), "check", "metrics")
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_dashboard_query_and_alert_evaluates_and_tells_the_truth(
    monitored: Monitored,
) -> None:
    m = monitored
    m.sluice.task("ok", {"image": BUSYBOX})
    m.sluice.pipeline("ok", {"tasks": [{"name": "only", "taskRef": {"name": "ok"}}]})
    m.sluice.wait_phase("ok", "Succeeded")
    # Prometheus scrapes every second: wait for it to see what the cluster says.
    wait_for(lambda: _scraped_phases_match_the_cluster(m), timeout=30, what="the scrape")
    assert _dashboard_phases(m) == {"Succeeded": 1}

    # The variables: a fresh install's job and instance are listed.
    variables = prom.dashboard_variables()
    for name, definition in variables.items():
        inner = definition[len("label_values(") : -1]
        selector, _, label = inner.rpartition(",")
        selector = _dashboard_expr(selector.strip(), m)
        got = m.prometheus.api(f"label/{label.strip()}/values", **{"match[]": selector})
        if name == "job":
            assert got == [JOB]
        elif name == "instance":
            assert got == [m.instance]
        elif name == "namespace":
            assert got == [m.namespace]

    # Every panel's query evaluates without error or warning.
    queries = {k: _dashboard_expr(v, m) for k, v in prom.dashboard_queries().items()}
    results = {k: m.prometheus.query(v) for k, v in queries.items()}
    assert [float(s["value"][1]) for s in results["Degraded pipelines/A"]] == [0]
    assert results["Degraded pipelines (list)/A"] == []
    leaders = [float(s["value"][1]) for s in results["Leader/A"]]
    assert leaders == [1.0]

    # Every alert expression evaluates, and a healthy install raises none.
    for name, alert in prom.alerts(prom.rule_groups()).items():
        assert m.prometheus.query(alert["expr"]) == [], name

    # Prometheus itself evaluated every rule without error, and nothing fires.
    def evaluated() -> list[dict[str, Any]] | None:
        rules = [r for g in m.prometheus.api("rules")["groups"] for r in g["rules"]]
        return rules if all(r.get("lastEvaluation", "").startswith("2") for r in rules) else None

    rules = wait_for(evaluated, timeout=30, what="every rule evaluated")
    assert {r["name"]: r["health"] for r in rules} == {r["name"]: "ok" for r in rules}
    # A rule evaluated before Prometheus' first scrape saw no `up` and made
    # SluiceOperatorDown pending; the next evaluation after a scrape clears it.
    wait_for(
        lambda: m.prometheus.api("alerts")["alerts"] == [],
        timeout=30,
        what="no alert pending or firing once the operator is scraped",
    )


def _attempt_seconds(job: Any, sluice: Any) -> float:
    """A Job's duration as the cluster says: creation to its pod's success (a step is done
    then: the pod view), else to the Job's failure."""
    pods = sluice.core.list_namespaced_pod(
        sluice.ns, label_selector=f"job-name={job.metadata.name}"
    ).items
    ends = [
        c.state.terminated.finished_at
        for p in pods
        if p.status.phase == "Succeeded"
        for c in p.status.container_statuses or []
        if c.name == "main" and c.state.terminated
    ]
    st = job.status
    end = (ends[0] if ends else None) or next(
        c.last_transition_time for c in st.conditions or [] if c.type == "Failed"
    )
    return float((end - job.metadata.creation_timestamp).total_seconds())


def test_step_durations_show_per_step_and_go_with_the_step_and_the_pipeline(
    monitored: Monitored,
) -> None:
    """Issue 17's per-step durations, through Prometheus: each step's last attempt,
    labelled by pipeline, step and result, equal to its Job's duration; a step
    removed from the spec and then the deleted pipeline take their series."""
    m = monitored
    slow = {"image": BUSYBOX, "podTemplate": sim(duration="2s")}
    m.sluice.task("dur-slow", slow)
    failing = {"image": BUSYBOX, "podTemplate": sim("fail", exit_code=3), "retry": {"limit": 0}}
    m.sluice.task("dur-bad", failing)
    prep = {"name": "prep", "taskRef": {"name": "dur-slow"}}
    train = {"name": "train", "taskRef": {"name": "dur-slow"}, "dependsOn": ["prep"]}
    boom = {"name": "boom", "taskRef": {"name": "dur-bad"}}
    m.sluice.pipeline("durs", {"tasks": [prep, train, boom]})
    m.sluice.wait_task("durs", "boom", "Failed")
    m.sluice.wait_task("durs", "train", "Succeeded")  # Degraded before: prep still ran
    jobs = {j.metadata.annotations["sluice.dev/task-name"]: j for j in m.sluice.jobs("durs")}
    expected = {
        ("prep", "succeeded"): _attempt_seconds(jobs["prep"], m.sluice),
        ("train", "succeeded"): _attempt_seconds(jobs["train"], m.sluice),
        ("boom", "failed"): _attempt_seconds(jobs["boom"], m.sluice),
    }
    assert expected[("train", "succeeded")] >= 2  # the simulated 2 s ran

    raw = f'sluice_step_last_duration_seconds{{job="{JOB}", namespace="{m.namespace}"}}'

    def scraped() -> dict[tuple[str, str], float]:
        """(step, result) -> seconds of pipeline durs; no other labels but these."""
        out = {}
        for s in m.prometheus.query(raw):
            labels = s["metric"]
            assert set(labels) == {
                "__name__",
                "job",
                "instance",
                "namespace",
                "pipeline",
                "step",
                "result",
            }
            if labels["pipeline"] == "durs":
                out[(labels["step"], labels["result"])] = float(s["value"][1])
        return out

    def panel(ref: str) -> dict[str, float]:
        expr = queries[f"Step duration (last attempt)/{ref}"]
        return {
            s["metric"]["step"]: float(s["value"][1])
            for s in m.prometheus.query(expr)
            if s["metric"]["pipeline"] == "durs"
        }

    try:
        wait_for(lambda: scraped() == expected, timeout=30, what=f"{expected} scraped")
        # The dashboard's panel shows them, succeeded (A) and failed (B) apart.
        queries = {k: _dashboard_expr(v, m) for k, v in prom.dashboard_queries().items()}
        assert panel("A") == {
            "prep": expected[("prep", "succeeded")],
            "train": expected[("train", "succeeded")],
        }
        assert panel("B") == {"boom": expected[("boom", "failed")]}
        variable = prom.dashboard_variables()["pipeline"][len("label_values(") : -1]
        selector = _dashboard_expr(variable.rpartition(",")[0], m)
        assert "durs" in m.prometheus.api("label/pipeline/values", **{"match[]": selector})

        # The failed step leaves the spec: its series goes, the others stay.
        m.sluice.patch("durs", {"spec": {"tasks": [prep, train]}})
        del expected[("boom", "failed")]
        wait_for(lambda: scraped() == expected, timeout=30, what="boom's series gone")
    finally:
        m.sluice.delete("durs")
    wait_for(lambda: scraped() == {}, timeout=30, what="the deleted pipeline's series gone")


def test_a_degraded_pipeline_shows_and_its_alert_outlives_the_operator(
    monitored: Monitored,
) -> None:
    m = monitored
    m.sluice.task("bad", {"image": BUSYBOX, "podTemplate": sim("fail", exit_code=3)})
    m.sluice.pipeline("deg", {"tasks": [{"name": "only", "taskRef": {"name": "bad"}}]})
    m.sluice.wait_phase("deg", "Degraded")
    wait_for(lambda: _scraped_phases_match_the_cluster(m), timeout=30, what="the scrape")
    assert _dashboard_phases(m).get("Degraded") == 1

    queries = {k: _dashboard_expr(v, m) for k, v in prom.dashboard_queries().items()}
    assert m.prometheus.values(queries["Degraded pipelines/A"], "") == {"": 1.0}
    listed = [s["metric"] for s in m.prometheus.query(queries["Degraded pipelines (list)/A"])]
    assert [(s["namespace"], s["pipeline"]) for s in listed] == [(m.namespace, "deg")]
    degraded = prom.alerts(prom.rule_groups())["SluicePipelineDegraded"]["expr"]
    down = prom.alerts(prom.rule_groups())["SluiceOperatorDown"]["expr"]

    def firing_for() -> list[tuple[str, str]]:
        return [
            (s["metric"]["namespace"], s["metric"]["pipeline"])
            for s in m.prometheus.query(degraded)
        ]

    assert firing_for() == [(m.namespace, "deg")]
    assert m.prometheus.query(down) == []

    # The operator dies: its series go stale, the Degraded pipeline still is.
    m.operator.kill()
    wait_for(lambda: m.prometheus.query(f'up{{job="{JOB}"}} == 0'), timeout=30, what="up == 0")
    wait_for(
        lambda: not m.prometheus.query(f'sluice_pipeline_degraded{{job="{JOB}"}}'),
        timeout=30,
        what="the operator's series to go stale",
    )
    assert firing_for() == [(m.namespace, "deg")]
    assert [s["metric"] for s in m.prometheus.query(down)] == [
        {"job": JOB, "namespace": OPERATOR_NAMESPACE}
    ]


def _leads(op: OperatorProcess) -> float | None:
    """The replica's own sluice_leader, None while it does not export one."""
    m = re.search(r"^sluice_leader(?:\{\})? (\S+)$", op.metrics(), re.M)
    return float(m.group(1)) if m else None


def test_two_replicas_one_losing_its_lease_the_numbers_stay_true(
    cluster: Cluster, crds: None, api_client: client.ApiClient, tmp_path: Path
) -> None:
    """The issue's lost Lease: the leader is paused past its Lease, the standby
    takes over, the old leader resumes. Prometheus scrapes both (as the
    chart's Service does): the dashboard counts each pipeline once and no
    alert fires."""
    core = client.CoreV1Api(api_client)
    ns = f"mon-ha-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    ops: list[OperatorProcess] = []
    server: prom.PrometheusServer | None = None
    try:
        wait_for(
            lambda: any(
                sa.metadata.name == "default"
                for sa in core.list_namespaced_service_account(ns).items
            ),
            timeout=60,
            what="the default ServiceAccount",
        )
        first = OperatorProcess(cluster.kubeconfig, tmp_path / "a.log", namespaces=[ns]).start()
        ops.append(first)
        assert _leads(first) is not None, "every replica exports sluice_leader"
        wait_for(lambda: _leads(first) == 1, timeout=30, what="the first replica to lead")
        second = OperatorProcess(cluster.kubeconfig, tmp_path / "b.log", namespaces=[ns]).start()
        ops.append(second)
        server = prom.PrometheusServer(
            tmp_path / "prometheus",
            targets=[f"127.0.0.1:{op.metrics_port}" for op in ops],
            job=JOB,
            target_labels={"namespace": OPERATOR_NAMESPACE},
            rule_groups=prom.rule_groups(),
        ).start()
        m = Monitored(ns, Sluice(api_client, ns), first, server)
        m.sluice.task("ok", {"image": BUSYBOX})
        m.sluice.pipeline("one", {"tasks": [{"name": "only", "taskRef": {"name": "ok"}}]})
        m.sluice.wait_phase("one", "Succeeded")
        wait_for(lambda: _scraped_phases_match_the_cluster(m), timeout=30, what="the scrape")

        # Pause the leader past its Lease (4 s in tests): the standby takes over.
        assert first.proc is not None
        os.killpg(first.proc.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: _leads(second) == 1, timeout=60, what="the standby to lead")
            m.sluice.pipeline("two", {"tasks": [{"name": "only", "taskRef": {"name": "ok"}}]})
            m.sluice.wait_phase("two", "Succeeded")
        finally:
            os.killpg(first.proc.pid, signal.SIGCONT)
        wait_for(lambda: _leads(first) == 0, timeout=60, what="the old leader to step down")
        # Its per-step durations went with the Lease; the new leader's has what it ran.
        assert "sluice_step_last_duration_seconds{" not in first.metrics()
        assert re.search(
            r'^sluice_step_last_duration_seconds\{.*pipeline="two".*step="only"',
            second.metrics(),
            re.M,
        )
        wait_for(lambda: _scraped_phases_match_the_cluster(m), timeout=30, what="the scrape")
        assert _dashboard_phases(m) == {"Succeeded": 2}
        queries = {k: _dashboard_expr(v, m) for k, v in prom.dashboard_queries().items()}
        assert m.prometheus.values(queries["Degraded pipelines/A"], "") == {"": 0.0}
        leaders = m.prometheus.values(queries["Leader/A"], "instance")
        assert sorted(leaders.values()) == [0.0, 1.0]
        for name, alert in prom.alerts(prom.rule_groups()).items():
            assert m.prometheus.query(alert["expr"]) == [], name
    finally:
        if server is not None:
            server.stop()
        for op in ops:
            op.stop()
        core.delete_namespace(ns, propagation_policy="Background")
