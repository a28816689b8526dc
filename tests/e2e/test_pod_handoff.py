"""The pod view on the real control plane (the real Job controller, kwok pods):
a chain hands off on its pod's success, before the Job controller writes the
Job's batched `Complete`, and an operator restarted between the two loses and
invents nothing."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import pytest
from kubernetes import client, watch

from support.cluster import Cluster
from support.operator import OperatorProcess
from support.pipelines import Sluice, sim
from support.wait import wait_for

pytestmark = pytest.mark.cluster


def chain(n: int, duration: str = "300ms") -> dict[str, Any]:
    template = sim(duration=duration)
    tasks: list[dict[str, Any]] = []
    for i in range(n):
        deps = [f"s{i - 1}"] if i else []
        task = {"image": "busybox:1.36", "podTemplate": template}
        tasks.append({"name": f"s{i}", "dependsOn": deps, "task": task})
    return {"tasks": tasks}


class JobTimes(threading.Thread):
    """When the test's own watch sees each Job ADDED and each Job Complete."""

    def __init__(self, api_client: client.ApiClient, ns: str) -> None:
        super().__init__(daemon=True)
        self.api = client.BatchV1Api(api_client)
        self.ns = ns
        self.added: dict[str, float] = {}
        self.complete: dict[str, float] = {}
        self.w = watch.Watch()

    def run(self) -> None:
        # The stream is cut when the test stops it or its namespace goes.
        with contextlib.suppress(Exception):
            self._follow()

    def _follow(self) -> None:
        for event in self.w.stream(
            self.api.list_namespaced_job,
            self.ns,
            label_selector="app.kubernetes.io/managed-by=sluice",
            timeout_seconds=120,
        ):
            job = event["object"]
            step = job.metadata.annotations["sluice.dev/task-name"]
            now = time.monotonic()
            self.added.setdefault(step, now)
            conditions = job.status.conditions or []
            if any(c.type == "Complete" and c.status == "True" for c in conditions):
                self.complete.setdefault(step, now)


def test_a_chain_hands_off_on_pod_success_before_the_jobs_complete(
    e2e_namespace: str, api_client: client.ApiClient, operator: OperatorProcess
) -> None:
    s = Sluice(api_client, e2e_namespace)
    times = JobTimes(api_client, s.ns)
    times.start()
    n = 5
    s.pipeline("podchain", chain(n))
    s.wait_phase("podchain", "Succeeded")
    wait_for(lambda: len(times.complete) == n, timeout=30, what="every Job Complete")
    times.w.stop()
    early = [
        i
        for i in range(1, n)
        if times.added[f"s{i}"] < times.complete[f"s{i - 1}"]  # next Job before Complete
    ]
    # The Job controller writes Complete about a second after the pod; the hand-off
    # takes tens of ms. One step late on a loaded machine is tolerated.
    assert len(early) >= n - 2, (early, times.added, times.complete)
    st = s.status("podchain")
    assert all(t["phase"] == "Succeeded" and t["attempts"] == 1 for t in st["tasks"])


def test_an_operator_restarted_between_pod_success_and_job_complete_loses_nothing(
    cluster: Cluster,
    api_client: client.ApiClient,
    crds: None,
    make_namespace: Any,
    tmp_path: Any,
) -> None:
    ns = make_namespace("podview-")
    s = Sluice(api_client, ns)
    core = client.CoreV1Api(api_client)
    op = OperatorProcess(cluster.kubeconfig, tmp_path / "op.log", namespaces=[ns]).start()
    try:
        s.pipeline("restart", chain(4, duration="500ms"))

        def a_pod_succeeded() -> bool:
            pods = core.list_namespaced_pod(ns, label_selector="sluice.dev/task=s1").items
            return any(p.status.phase == "Succeeded" for p in pods)

        wait_for(a_pod_succeeded, timeout=60, what="s1's pod Succeeded")
        op.kill()  # most likely before s1's Job is Complete, maybe before s2 exists
        op = OperatorProcess(cluster.kubeconfig, tmp_path / "op2.log", namespaces=[ns]).start()
        s.wait_phase("restart", "Succeeded")
    finally:
        op.stop()
    keys = [
        (j.metadata.labels["sluice.dev/task"], j.metadata.labels["sluice.dev/attempt"])
        for j in s.jobs("restart")
    ]
    assert len(keys) == len(set(keys)) == 4  # one Job per step, none twice
    st = s.status("restart")
    assert all(t["phase"] == "Succeeded" and t["attempts"] == 1 for t in st["tasks"])
