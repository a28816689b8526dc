"""Step caching on the real control plane: a cached step creates no Job in the next run, its
results still reach its dependents; a changed param or cacheVersion misses."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from kubernetes import client

from support.cluster import ROOT, Cluster
from support.operator import OperatorProcess
from support.pipelines import Sluice
from support.wait import wait_for

pytestmark = pytest.mark.cluster

BUSYBOX = "busybox:1.36"
MESSAGE = "sim.sluice.dev/termination-message"
RERUN = "sluice.dev/rerun"


def spec(lr: str = "0.1", version: str = "1") -> dict[str, Any]:
    train = {
        "image": BUSYBOX,
        "params": [{"name": "lr"}],
        "args": ["--lr=$(params.lr)"],
        "results": [{"name": "model"}],
        "cacheVersion": version,
        "podTemplate": {"metadata": {"annotations": {MESSAGE: json.dumps({"model": "s3://m/7"})}}},
    }
    return {
        "params": [{"name": "lr", "value": lr}],
        "cache": {"enabled": True, "maxAgeSeconds": 3600},
        "tasks": [
            {"name": "train", "task": train, "params": [{"name": "lr", "value": "$(params.lr)"}]},
            {
                "name": "report",
                "dependsOn": ["train"],
                "cache": {"enabled": False},
                "task": {"image": BUSYBOX, "args": ["$(tasks.train.results.model)"]},
            },
        ],
    }


def jobs_of(s: Sluice, pipeline: str, step: str) -> dict[int, Any]:
    return {
        int(j.metadata.labels["sluice.dev/run"]): j
        for j in s.jobs(pipeline)
        if j.metadata.annotations["sluice.dev/task-name"] == step
    }


def run_again(s: Sluice, name: str, value: str, new_spec: dict[str, Any] | None = None) -> None:
    before = s.status(name)["run"]
    patch: dict[str, Any] = {"metadata": {"annotations": {RERUN: value}}}
    if new_spec is not None:
        patch["spec"] = new_spec
    s.patch(name, patch)
    wait_for(lambda: s.status(name)["run"] == before + 1, timeout=30, what=f"run {before + 1}")
    s.wait_phase(name, "Succeeded", "Failed", "Degraded", timeout=60)


@pytest.fixture
def s(api_client: client.ApiClient, e2e_namespace: str) -> Sluice:
    return Sluice(api_client, e2e_namespace)


def test_a_cached_step_creates_no_job_and_its_dependents_get_its_results(
    s: Sluice, operator: OperatorProcess
) -> None:
    s.pipeline("cached", spec())
    assert s.wait_phase("cached", "Succeeded", "Failed", timeout=60)["phase"] == "Succeeded"
    (entry,) = s.status("cached")["cache"]
    assert entry["step"] == "train" and entry["results"] == {"model": "s3://m/7"}

    run_again(s, "cached", "2")
    st = s.status("cached")
    assert st["phase"] == "Succeeded"
    train = next(t for t in st["tasks"] if t["name"] == "train")
    assert (train["reason"], train["message"]) == ("Cached", "cached from run 1")
    assert train["results"] == {"model": "s3://m/7"}
    assert 2 not in jobs_of(s, "cached", "train")  # no Job in run 2
    report = jobs_of(s, "cached", "report")
    assert 2 in report
    assert report[2].spec.template.spec.containers[0].args == ["s3://m/7"]
    assert any(e.reason == "TaskCached" for e in s.events("cached"))
    text = operator.metrics()
    assert f'sluice_task_cache_hits_total{{namespace="{s.ns}"}} 1.0' in text
    assert f'sluice_task_cache_misses_total{{namespace="{s.ns}"}} 1.0' in text


def test_a_changed_param_or_cache_version_misses_the_cache(s: Sluice) -> None:
    s.pipeline("miss", spec())
    assert s.wait_phase("miss", "Succeeded", "Failed", timeout=60)["phase"] == "Succeeded"

    run_again(s, "miss", "lr", spec(lr="0.2"))
    assert 2 in jobs_of(s, "miss", "train")
    run_again(s, "miss", "version", spec(lr="0.2", version="2"))
    assert 3 in jobs_of(s, "miss", "train")
    run_again(s, "miss", "same", spec(lr="0.2", version="2"))  # nothing changed: a hit
    assert 4 not in jobs_of(s, "miss", "train")
    run_again(s, "miss", "nocache-1")
    assert 5 in jobs_of(s, "miss", "train")
    train = next(t for t in s.status("miss")["tasks"] if t["name"] == "train")
    assert train["reason"] == "Completed"


def test_the_nightly_retrain_example_is_scheduled_and_reuses_its_steps(
    s: Sluice, cluster: Cluster
) -> None:
    cluster.kubectl("apply", "-n", s.ns, "-f", str(ROOT / "examples" / "nightly-retrain.yaml"))
    assert (
        s.wait_phase("nightly-retrain", "Succeeded", "Failed", timeout=60)["phase"] == "Succeeded"
    )
    st = s.status("nightly-retrain")
    nxt = datetime.strptime(st["schedule"]["nextScheduleTime"], "%Y-%m-%dT%H:%M:%SZ")
    berlin = nxt.replace(tzinfo=UTC).astimezone(ZoneInfo("Europe/Berlin"))
    assert (berlin.hour, berlin.minute) == (2, 30)
    assert st["history"][0]["trigger"] == "Created"
    assert {e["step"] for e in st["cache"]} == {"prepare", "train"}

    run_again(s, "nightly-retrain", "1")  # what the example's comment tells the reader
    phases = {t["name"]: t.get("reason") for t in s.status("nightly-retrain")["tasks"]}
    assert phases == {"prepare": "Cached", "train": "Cached", "report": "Completed"}
