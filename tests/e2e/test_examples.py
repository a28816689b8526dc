"""The examples double as end-to-end tests: what a newcomer applies must work."""

from __future__ import annotations

import pytest
from kubernetes import client

from support.cluster import ROOT, Cluster
from support.pipelines import Sluice

pytestmark = pytest.mark.cluster

EXAMPLES = ROOT / "examples"


def test_hello_and_ml_lifecycle_examples_succeed(
    cluster: Cluster, api_client: client.ApiClient, e2e_namespace: str
) -> None:
    s = Sluice(api_client, e2e_namespace)
    for name in ("hello.yaml", "ml-lifecycle.yaml"):
        cluster.kubectl("apply", "-n", e2e_namespace, "-f", str(EXAMPLES / name))
    assert s.wait_phase("hello", "Succeeded")["progress"] == "2/2"
    st = s.wait_phase("churn-model", "Succeeded", timeout=120)
    assert st["progress"] == "7/7"
    train = s.jobs("churn-model")
    container = next(
        j.spec.template.spec.containers[0]
        for j in train
        if j.metadata.annotations["sluice.dev/task-name"] == "train"
    )
    assert container.command[-4:] == ["--data", "s3://acme/churn/2026-11-26", "--epochs", "5"]
    uri = "s3://acme/churn/models/42"
    assert st["results"] == {"model-uri": uri, "auc": "0.871"}
    register = next(
        j.spec.template.spec.containers[0]
        for j in train
        if j.metadata.annotations["sluice.dev/task-name"] == "register"
    )
    assert register.command[3:5] == ["--uri", uri]
    assert {e.name: e.value for e in register.env}["MODEL_AUC"] == "0.871"


def test_degraded_example_degrades_then_recovers_when_the_task_is_fixed(
    cluster: Cluster, api_client: client.ApiClient, e2e_namespace: str
) -> None:
    s = Sluice(api_client, e2e_namespace)
    cluster.kubectl(
        "apply", "-n", e2e_namespace, "-f", str(EXAMPLES / "degraded-and-recovered.yaml")
    )
    st = s.wait_phase("nightly", "Degraded", timeout=120)
    tasks = {t["name"]: t for t in st["tasks"]}
    assert tasks["load"]["attempts"] == 3
    assert tasks["publish"]["phase"] == "Blocked"
    # The fix the example's comment tells the reader to make.
    cluster.kubectl(
        "patch",
        "task",
        "flaky-load",
        "-n",
        e2e_namespace,
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/spec/podTemplate"}]',
    )
    st = s.wait_phase("nightly", "Succeeded", timeout=120)
    assert {t["name"]: t["attempts"] for t in st["tasks"]} == {"load": 4, "publish": 1, "audit": 1}


def test_with_finally_example_runs_its_finally_steps_after_success(
    cluster: Cluster, api_client: client.ApiClient, e2e_namespace: str
) -> None:
    s = Sluice(api_client, e2e_namespace)
    cluster.kubectl("apply", "-n", e2e_namespace, "-f", str(EXAMPLES / "with-finally.yaml"))
    st = s.wait_phase("nightly-report", "Succeeded", timeout=120)
    phases = {t["name"]: (t["phase"], t.get("reason")) for t in st["tasks"]}
    assert phases["page"] == ("Skipped", "WhenFalse")
    assert {phases[n][0] for n in ("build", "publish", "notify", "cleanup")} == {"Succeeded"}
    assert st["progress"] == "5/5"
    notify = next(
        j
        for j in s.jobs("nightly-report")
        if j.metadata.annotations["sluice.dev/task-name"] == "notify"
    )
    env = {e.name: e.value for e in notify.spec.template.spec.containers[0].env}
    assert env == {"STATUS": "Succeeded", "BUILD": "Succeeded"}
