"""Faults: the operator's and the cluster's. Each test has its own operator(s)
on its own namespace, so it can kill them at will."""

from __future__ import annotations

import contextlib
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from support.cluster import CLUSTER_SCRIPT
from support.operator import OperatorProcess
from support.pipelines import Sluice, sim
from support.wait import wait_for

pytestmark = pytest.mark.cluster

BUSYBOX = "busybox:1.36"


def inline(name: str, *deps: str, **task: Any) -> dict[str, Any]:
    return {"name": name, "dependsOn": list(deps), "task": {"image": BUSYBOX, **task}}


def _restart(component: str) -> float:
    started = time.monotonic()
    subprocess.run(
        [sys.executable, str(CLUSTER_SCRIPT), "restart", component], check=True, capture_output=True
    )
    return time.monotonic() - started


def _wait_attempts(s: Sluice, pipeline: str, task: str, n: int) -> None:
    wait_for(
        lambda: s.task_status(pipeline, task).get("attempts") == n,
        timeout=60,
        what=f"attempt {n} of {task}",
    )


def _jobs_per_attempt(s: Sluice) -> dict[tuple[str, str, str, str], int]:
    counts: dict[tuple[str, str, str, str], int] = {}
    for j in s.jobs():
        labels = j.metadata.labels
        key = (
            labels["sluice.dev/pipeline"],
            labels["sluice.dev/task"],
            labels["sluice.dev/run"],
            labels["sluice.dev/attempt"],
        )
        counts[key] = counts.get(key, 0) + 1
    return counts


# --------------------------------------------------------------------------- objects deleted


def test_a_deleted_running_job_counts_as_a_failed_attempt_and_is_retried(
    api_client: client.ApiClient, fault_ns: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    s = Sluice(api_client, fault_ns)
    start_operator()
    s.pipeline(
        "p",
        {
            "tasks": [
                inline(
                    "a",
                    podTemplate=sim(duration="30s"),
                    retry={"limit": 2, "backoff": {"initialSeconds": 1}},
                )
            ]
        },
    )
    ts = s.wait_task("p", "a", "Running")
    wait_for(lambda: s.jobs("p"), timeout=30, what="the Job")
    s.batch.delete_namespaced_job(ts["job"], fault_ns, propagation_policy="Background")
    _wait_attempts(s, "p", "a", 2)
    events = {e.reason: e.message for e in s.events("p")}
    assert "JobDeleted" in events["TaskRetrying"]


def test_a_deleted_pod_fails_its_attempt_which_is_retried(
    api_client: client.ApiClient, fault_ns: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    s = Sluice(api_client, fault_ns)
    start_operator()
    s.pipeline(
        "p",
        {
            "tasks": [
                inline(
                    "a",
                    podTemplate=sim(duration="20s"),
                    retry={"limit": 2, "backoff": {"initialSeconds": 0}},
                )
            ]
        },
    )
    ts = s.wait_task("p", "a", "Running")

    def pod() -> Any:
        pods = s.core.list_namespaced_pod(fault_ns, label_selector=f"job-name={ts['job']}").items
        return pods[0] if pods and pods[0].status.phase == "Running" else None

    victim = wait_for(pod, timeout=30, what="the running pod")
    s.core.delete_namespaced_pod(victim.metadata.name, fault_ns)
    _wait_attempts(s, "p", "a", 2)
    retry_event = next(e for e in s.events("p") if e.reason == "TaskRetrying")
    assert "exit code 143" in retry_event.message  # the container was stopped (SIGTERM)


def test_a_task_deleted_under_a_running_pipeline_holds_it_until_reapplied(
    api_client: client.ApiClient, fault_ns: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    s = Sluice(api_client, fault_ns)
    start_operator()
    s.task("first", {"image": BUSYBOX, "podTemplate": sim(duration="3s")})
    s.task("second", {"image": BUSYBOX})
    s.pipeline(
        "p",
        {
            "tasks": [
                {"name": "a", "taskRef": {"name": "first"}},
                {"name": "b", "taskRef": {"name": "second"}, "dependsOn": ["a"]},
            ]
        },
    )
    s.wait_task("p", "a", "Running")
    s.custom.delete_namespaced_custom_object("sluice.dev", "v1alpha1", fault_ns, "tasks", "second")
    st = s.wait_phase("p", "Failed")
    assert 'Task "second", which does not exist' in st["message"]
    # The attempt already running was left alone and finishes.
    s.wait_task("p", "a", "Succeeded")
    s.task("second", {"image": BUSYBOX})
    st = s.wait_phase("p", "Succeeded")
    assert {t["name"]: t["attempts"] for t in st["tasks"]} == {"a": 1, "b": 1}


def test_editing_a_pipeline_mid_run_adds_and_removes_steps(
    api_client: client.ApiClient, fault_ns: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    s = Sluice(api_client, fault_ns)
    start_operator()
    s.pipeline(
        "p",
        {
            "tasks": [
                inline("a", podTemplate=sim(duration="3s")),
                inline("b", "a"),
                inline("gone", "a"),
            ]
        },
    )
    s.wait_task("p", "a", "Running")
    spec = s.get("p")["spec"]
    spec["tasks"] = [t for t in spec["tasks"] if t["name"] != "gone"] + [inline("new", "b")]
    s.patch("p", {"spec": {"tasks": spec["tasks"]}})
    st = s.wait_phase("p", "Succeeded")
    assert [t["name"] for t in st["tasks"]] == ["a", "b", "new"]
    assert st["observedGeneration"] == 2
    assert {j.metadata.labels["sluice.dev/task"] for j in s.jobs("p")} == {"a", "b", "new"}


# --------------------------------------------------------------------------- the control plane


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_operator_resumes_by_itself_after_a_control_plane_restart(
    component: str,
    api_client: client.ApiClient,
    fault_ns: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    s = Sluice(api_client, fault_ns)
    # Losing the API server pauses the leader (it can't renew its lease);
    # it resumes by itself, without a restart, once the lease is its own again.
    op = start_operator()
    n = 8
    s.pipeline(
        "chain", {"tasks": [inline("c0")] + [inline(f"c{i}", f"c{i - 1}") for i in range(1, n)]}
    )
    wait_for(
        lambda: s.task_status("chain", "c2").get("phase") == "Running",
        timeout=60,
        what="the chain to reach c2",
    )
    down = _restart(component)
    restarted = time.monotonic()
    before = len(s.jobs("chain"))
    wait_for(lambda: len(s.jobs("chain")) > before, timeout=120, what="progress after the restart")
    resume = time.monotonic() - restarted
    s.wait_phase("chain", "Succeeded", timeout=120)
    assert op.proc is not None and op.proc.poll() is None, "the operator must not have died"
    assert all(n == 1 for n in _jobs_per_attempt(s).values())
    print(f"\n{component} restart took {down:.1f}s; the next Job came {resume:.1f}s after")


# --------------------------------------------------------------------------- replicas


def _leader(s: Sluice, namespace: str = "default") -> str | None:
    coord = client.CoordinationV1Api(s.custom.api_client)
    for lease in coord.list_namespaced_lease(namespace).items:
        if lease.metadata.name.startswith("sluice-operator-"):
            holder = lease.spec.holder_identity
            if holder and str(lease.spec.lease_duration_seconds) != "1":
                return str(holder)
    return None


def test_two_replicas_one_acts_and_the_other_takes_over_when_it_dies(
    api_client: client.ApiClient, fault_ns: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    s = Sluice(api_client, fault_ns)
    first = start_operator("--lease-duration", "6")
    wait_for(lambda: "leading" in first.log() or None, timeout=30, what="a leader")
    second = start_operator("--lease-duration", "6")
    wait_for(lambda: "waiting" in second.log() or None, timeout=30, what="a follower")
    chain = [inline("k0")] + [inline(f"k{i}", f"k{i - 1}") for i in range(1, 10)]
    s.pipeline("ha", {"tasks": chain})
    wait_for(
        lambda: s.task_status("ha", "k2").get("phase") == "Running",
        timeout=60,
        what="progress under the first replica",
    )
    assert "sluice_jobs_created_total 0.0" in second.metrics()  # the follower did nothing
    first.kill()
    killed = time.monotonic()
    wait_for(lambda: "leading" in second.log() or None, timeout=30, what="the takeover")
    failover = time.monotonic() - killed
    s.wait_phase("ha", "Succeeded", timeout=120)
    assert all(n == 1 for n in _jobs_per_attempt(s).values())
    assert {t["attempts"] for t in s.status("ha")["tasks"]} == {1}
    assert failover <= 6 + 3  # the lease duration plus a retry period or so
    print(f"\nfailover took {failover:.1f}s with a 6 s lease")


def test_two_operators_started_by_hand_never_both_act(
    api_client: client.ApiClient, fault_ns: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    s = Sluice(api_client, fault_ns)
    ops = [start_operator(), start_operator()]
    s.pipeline("twice", {"tasks": [inline("a"), inline("b", "a"), inline("c", "a")]})
    s.wait_phase("twice", "Succeeded")
    created = [
        float(re.search(r"sluice_jobs_created_total ([0-9.]+)", op.metrics()).group(1))  # type: ignore[union-attr]
        for op in ops
    ]
    assert sorted(created) == [0.0, 3.0]
    assert all(n == 1 for n in _jobs_per_attempt(s).values())


# --------------------------------------------------------------------------- chaos


def _mixed_pipelines(rng: random.Random) -> list[tuple[str, dict[str, Any], str]]:
    """30 pipelines of mixed shapes and the phase each must end in."""
    out: list[tuple[str, dict[str, Any], str]] = []
    fail = sim("fail", exit_code=2)
    for i in range(30):
        shape = i % 5
        if shape == 0:  # a long chain: it outlives 20 kill-and-restart cycles
            tasks = [inline("s0")] + [inline(f"s{k}", f"s{k - 1}") for k in range(1, 24)]
            want = "Succeeded"
        elif shape == 1:  # diamond
            tasks = [inline("a"), inline("b", "a"), inline("c", "a"), inline("d", "b", "c")]
            want = "Succeeded"
        elif shape == 2:  # wide fan-out and fan-in
            tasks = (
                [inline("root")]
                + [inline(f"w{k}", "root") for k in range(6)]
                + [inline("join", *[f"w{k}" for k in range(6)])]
            )
            want = "Succeeded"
        elif shape == 3:  # a failing task that retries, then degrades
            tasks = [
                inline("ok"),
                inline(
                    "bad",
                    "ok",
                    podTemplate=fail,
                    retry={"limit": 1, "backoff": {"initialSeconds": 1}},
                ),
                inline("after", "bad"),
                inline("side", "ok"),
            ]
            want = "Degraded"
        else:  # parallel with a cap
            tasks = [inline(f"p{k}") for k in range(5)]
            want = "Succeeded"
        spec: dict[str, Any] = {"tasks": tasks}
        if shape == 4:
            spec["maxParallel"] = 2
        out.append((f"mix-{i}", spec, want))
    rng.shuffle(out)
    return out


def test_kill_9_at_random_moments_loses_nothing_and_doubles_nothing(
    api_client: client.ApiClient, fault_ns: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    rng = random.Random(20261126)
    s = Sluice(api_client, fault_ns)
    pipelines = _mixed_pipelines(rng)
    op = start_operator("--lease-duration", "3")
    for name, spec, _ in pipelines:
        s.pipeline(name, spec)
    kills = 0
    deadline = time.monotonic() + 400

    def all_done() -> bool:
        items = s.custom.list_namespaced_custom_object(
            "sluice.dev", "v1alpha1", fault_ns, "pipelines"
        )["items"]
        phases = {p["metadata"]["name"]: (p.get("status") or {}).get("phase") for p in items}
        return all(
            phases.get(name) == want and (want != "Degraded" or _side_done(items, name))
            for name, _, want in pipelines
        )

    while kills < 20 and time.monotonic() < deadline and not all_done():
        # Let it work for a random moment, measured in Jobs created, then kill it.
        target = len(s.jobs()) + rng.randint(1, 3)
        with contextlib.suppress(AssertionError):
            wait_for(
                lambda target=target: len(s.jobs()) >= target or all_done(),
                timeout=60,
                what="some progress",
                interval=0.05,
            )
        op.kill()
        kills += 1
        op = start_operator("--lease-duration", "3")
    wait_for(all_done, timeout=300, what="every pipeline to reach its final phase")
    assert kills == 20, f"only {kills} kills happened before the run ended"
    # Nothing doubled: one Job per (pipeline, task, run, attempt).
    counts = _jobs_per_attempt(s)
    assert all(n == 1 for n in counts.values()), [k for k, n in counts.items() if n > 1]
    # Nothing beyond the retry policy, and every status agrees with the Jobs.
    per_task: dict[tuple[str, str], int] = {}
    for pipeline, task, _run, _attempt in counts:
        per_task[(pipeline, task)] = per_task.get((pipeline, task), 0) + 1
    for name, spec, want in pipelines:
        st = s.status(name)
        assert st["phase"] == want, (name, st)
        for t in st["tasks"]:
            jobs = per_task.get((name, t["name"]), 0)
            assert jobs == t["attempts"], (name, t)
            limit = (
                next(x for x in spec["tasks"] if x["name"] == t["name"])
                .get("retry", {})
                .get("limit", 2)
            )
            assert jobs <= 1 + limit
            if t["phase"] == "Succeeded":
                assert t["attempts"] == 1
    print(f"\n{kills} kills survived; {len(pipelines)} pipelines and {len(counts)} Jobs checked")


def _side_done(items: list[dict[str, Any]], name: str) -> bool:
    p = next(x for x in items if x["metadata"]["name"] == name)
    tasks = {t["name"]: t["phase"] for t in (p.get("status") or {}).get("tasks", [])}
    return tasks.get("side") == "Succeeded" and tasks.get("bad") == "Failed"
