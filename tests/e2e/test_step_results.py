"""Results on the real control plane: kwok pods report a termination message
(sim.sluice.dev/termination-message), the operator reads it from the pod and hands it on."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from support.cluster import Cluster
from support.operator import OperatorProcess
from support.pipelines import Sluice
from support.wait import wait_for

pytestmark = pytest.mark.cluster

BUSYBOX = "busybox:1.36"
MESSAGE = "sim.sluice.dev/termination-message"


def step(name: str, message: dict[str, Any] | str | None = None, **task: Any) -> dict[str, Any]:
    template: dict[str, Any] = {"metadata": {"annotations": {}}}
    if message is not None:
        text = message if isinstance(message, str) else json.dumps(message)
        template["metadata"]["annotations"][MESSAGE] = text
    return {"name": name, "task": {"image": BUSYBOX, "podTemplate": template, **task}}


def results(*names: str) -> list[dict[str, str]]:
    return [{"name": n} for n in names]


def main_container(s: Sluice, pipeline: str, task: str) -> Any:
    jobs = [j for j in s.jobs(pipeline) if j.metadata.annotations["sluice.dev/task-name"] == task]
    assert jobs, f"no Job for {task}"
    return next(c for c in jobs[-1].spec.template.spec.containers if c.name == "main")


@pytest.fixture
def s(api_client: client.ApiClient, e2e_namespace: str) -> Sluice:
    return Sluice(api_client, e2e_namespace)


def test_train_evaluate_register_hand_results_into_env_and_args(s: Sluice) -> None:
    uri = "s3://acme/models/42"
    s.pipeline(
        "ml",
        {
            "tasks": [
                step("train", {"model-uri": uri}, results=results("model-uri")),
                step(
                    "evaluate",
                    {"auc": "0.91"},
                    results=results("auc"),
                    env=[{"name": "MODEL", "value": "$(tasks.train.results.model-uri)"}],
                ),
                {
                    **step(
                        "register",
                        params=[{"name": "model"}, {"name": "auc"}],
                        args=["--model=$(params.model)", "--auc", "$(params.auc)"],
                    ),
                    "params": [
                        {"name": "model", "value": "$(tasks.train.results.model-uri)"},
                        {"name": "auc", "value": "$(tasks.evaluate.results.auc)"},
                    ],
                },
            ],
            "results": [{"name": "model", "value": "$(tasks.train.results.model-uri)"}],
        },
    )
    st = s.wait_phase("ml", "Succeeded", "Failed", timeout=120)
    assert st["phase"] == "Succeeded", st
    assert s.task_status("ml", "train")["results"] == {"model-uri": uri}
    assert s.task_status("ml", "evaluate")["results"] == {"auc": "0.91"}
    assert st["results"] == {"model": uri}
    evaluate = main_container(s, "ml", "evaluate")
    env = {e.name: e.value for e in evaluate.env}
    assert env["MODEL"] == uri and env["SLUICE_RESULTS_PATH"] == "/dev/termination-log"
    assert evaluate.termination_message_path == "/dev/termination-log"
    register = main_container(s, "ml", "register")
    assert register.args == [f"--model={uri}", "--auc", "0.91"]


def test_invalid_results_are_retried_then_the_pipeline_is_degraded(s: Sluice) -> None:
    s.pipeline(
        "bad",
        {
            "tasks": [
                {
                    **step("train", {"other": "x"}, results=results("model-uri")),
                    "retry": {"limit": 1, "backoff": {"initialSeconds": 1}},
                }
            ]
        },
    )
    st = s.wait_phase("bad", "Degraded", timeout=120)
    ts = s.task_status("bad", "train")
    assert ts["phase"] == "Failed" and ts["attempts"] == 2, ts
    assert ts["reason"] == "InvalidResults"
    assert '"model-uri" missing' in ts["message"] and '"other"' in ts["message"]
    reasons = [e.reason for e in s.events("bad")]
    assert "TaskRetrying" in reasons and "TaskFailed" in reasons
    assert st["progress"] == "0/1"


def test_a_restarted_operator_reads_the_results_of_a_job_that_succeeded_meanwhile(
    cluster: Cluster, api_client: client.ApiClient, crds: None, make_namespace: Any, tmp_path: Any
) -> None:
    ns = make_namespace("res-")
    s = Sluice(api_client, ns)
    op = OperatorProcess(cluster.kubeconfig, tmp_path / "op.log", namespaces=[ns]).start()
    try:
        s.pipeline(
            "p",
            {
                "tasks": [
                    step("train", {"uri": "s3://m/1"}, results=results("uri")),
                    step("use", args=["$(tasks.train.results.uri)"]),
                ]
            },
        )
        wait_for(lambda: s.jobs("p"), timeout=60, what="train's Job")
        op.kill()
        wait_for(lambda: all(j.status.succeeded for j in s.jobs("p")), timeout=60, what="Job done")
        assert not s.task_status("p", "train").get("results")
        op = OperatorProcess(cluster.kubeconfig, tmp_path / "op2.log", namespaces=[ns]).start()
        st = s.wait_phase("p", "Succeeded", timeout=120)
    finally:
        op.stop()
    assert s.task_status("p", "train")["results"] == {"uri": "s3://m/1"}
    assert main_container(s, "p", "use").args == ["s3://m/1"]
    assert st["tasks"][0]["attempts"] == 1


def test_300_steps_with_results_near_the_status_bound(s: Sluice) -> None:
    value = "v" * 800  # 300 x ~830 bytes: just under the 256 KiB a pipeline keeps
    steps = [
        {
            **step(f"s{i}", {"r": value}, results=results("r")),
            "task": {
                "image": BUSYBOX,
                "results": results("r"),
                "podTemplate": {
                    "metadata": {
                        "annotations": {
                            MESSAGE: json.dumps({"r": value}),
                            "sim.sluice.dev/duration": "100ms",
                        }
                    }
                },
            },
        }
        for i in range(300)
    ]
    s.pipeline("big", {"tasks": steps})
    st = s.wait_phase("big", "Succeeded", "Degraded", "Failed", timeout=300)
    assert st["phase"] == "Succeeded", st.get("message")
    assert all(t["results"] == {"r": value} for t in st["tasks"])
