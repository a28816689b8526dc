"""`when` and `finally` on the real control plane (params-based conditions; results-based
ones are unit-tested in tests/unit/test_reconcile_flow.py)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from support.pipelines import Sluice, sim

pytestmark = pytest.mark.cluster

BUSYBOX = "busybox:1.36"


def inline(name: str, *deps: str, **extra: Any) -> dict[str, Any]:
    task = {"image": BUSYBOX, **extra.pop("task", {})}
    return {"name": name, "dependsOn": list(deps), "task": task, **extra}


def env_of(s: Sluice, pipeline: str, task: str) -> dict[str, str]:
    job = next(
        j for j in s.jobs(pipeline) if j.metadata.annotations["sluice.dev/task-name"] == task
    )
    return {e.name: e.value for e in job.spec.template.spec.containers[0].env or []}


@pytest.fixture
def s(api_client: client.ApiClient, e2e_namespace: str) -> Sluice:
    return Sluice(api_client, e2e_namespace)


def test_when_skips_deploy_below_the_threshold_and_runs_it_above(s: Sluice) -> None:
    for name, score in (("below", "0.61"), ("above", "0.91")):
        s.pipeline(
            name,
            {
                "params": [{"name": "score", "value": score}],
                "tasks": [
                    inline("evaluate"),
                    inline("deploy", "evaluate", when="double(params.score) >= 0.8"),
                    inline("announce", "deploy"),
                ],
            },
        )
    below = s.wait_phase("below", "Succeeded")
    deploy = next(t for t in below["tasks"] if t["name"] == "deploy")
    assert (deploy["phase"], deploy["reason"]) == ("Skipped", "WhenFalse")
    assert 'params.score = "0.61"' in deploy["message"]
    assert below["progress"] == "3/3"
    assert {j.metadata.annotations["sluice.dev/task-name"] for j in s.jobs("below")} == {
        "evaluate",
        "announce",
    }
    above = s.wait_phase("above", "Succeeded")
    assert {t["name"]: t["phase"] for t in above["tasks"]}["deploy"] == "Succeeded"
    assert "TaskSkipped" in {e.reason for e in s.events("below")}


def _with_finally(main: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    notify = inline(
        "notify",
        task={
            "env": [
                {"name": "STATUS", "value": "$(tasks.status)"},
                {"name": "MAIN", "value": "$(tasks.main.status)"},
            ]
        },
    )
    return {"tasks": main, "finally": [notify], **spec}


def test_finally_runs_after_success_degraded_and_timeout(s: Sluice) -> None:
    s.pipeline("fin-ok", _with_finally([inline("main")]))
    s.pipeline(
        "fin-degraded",
        _with_finally(
            [inline("main", task={"podTemplate": sim("fail", exit_code=3)}, retry={"limit": 0})]
        ),
    )
    s.pipeline(
        "fin-timeout",
        _with_finally(
            [inline("main", task={"podTemplate": sim(duration="120s")})], timeoutSeconds=3
        ),
    )

    ok = s.wait_phase("fin-ok", "Succeeded")
    assert ok["finallyFor"] == "Succeeded" and ok["progress"] == "2/2"
    assert env_of(s, "fin-ok", "notify") == {"STATUS": "Succeeded", "MAIN": "Succeeded"}

    s.wait_task("fin-degraded", "notify", "Succeeded")
    degraded = s.wait_phase("fin-degraded", "Degraded")
    assert env_of(s, "fin-degraded", "notify") == {"STATUS": "Degraded", "MAIN": "Failed"}
    assert degraded["finallyFor"] == "Degraded"

    s.wait_task("fin-timeout", "notify", "Succeeded")
    timed = s.wait_phase("fin-timeout", "Failed")
    assert env_of(s, "fin-timeout", "notify") == {"STATUS": "Timeout", "MAIN": "Failed"}
    assert {c["type"]: c["reason"] for c in timed["conditions"]}["Succeeded"] == "Timeout"
    assert timed.get("finishedAt")
