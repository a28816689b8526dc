"""Steps stuck before their pod starts, on the real control plane (issue 18): kwok pods
kept waiting (sim.sluice.dev/waiting-reason), the real scheduler's Unschedulable, the
real Job controller's FailedCreate under a ResourceQuota. The operator runs with
--stuck-after 3, so each cause shows within a few seconds."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from support.cluster import Cluster
from support.operator import OperatorProcess
from support.pipelines import Sluice
from support.wait import wait_for

pytestmark = pytest.mark.cluster

BUSYBOX = "busybox:1.36"
STUCK_AFTER = 3
PREFIX = "stuck-"
WAITING = "sim.sluice.dev/waiting-reason"
SOON = STUCK_AFTER + 12  # the threshold, plus a few seconds (the pod, the read, the write)


def waiting(reason: str) -> dict[str, Any]:
    return {"metadata": {"annotations": {WAITING: reason}}}


def inline(name: str, **task: Any) -> dict[str, Any]:
    extra = {k: task.pop(k) for k in ("retry", "pendingTimeoutSeconds") if k in task}
    return {"name": name, "task": {"image": BUSYBOX, **task}, **extra}


@pytest.fixture(scope="module")
def stuck_operator(
    cluster: Cluster, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("stuck") / "operator.log"
    op = OperatorProcess(
        cluster.kubeconfig,
        log,
        namespaces=[f"{PREFIX}*"],
        extra_args=["--stuck-after", str(STUCK_AFTER)],
    ).start()
    yield op
    op.stop()


@pytest.fixture
def s(stuck_operator: OperatorProcess, api_client: client.ApiClient, make_namespace: Any) -> Sluice:
    return Sluice(api_client, make_namespace(PREFIX))


def stuck_reason(s: Sluice, pipeline: str, step: str) -> str | None:
    ts = s.task_status(pipeline, step)
    return ts.get("reason") if ts.get("stuckAt") and ts.get("phase") == "Running" else None


def wait_stuck(s: Sluice, pipeline: str, step: str, reason: str, timeout: float = SOON) -> Any:
    return wait_for(
        lambda: stuck_reason(s, pipeline, step) == reason,
        timeout=timeout,
        what=f"{pipeline}/{step} stuck with {reason}",
    )


def step_pods(s: Sluice, pipeline: str, step: str) -> list[Any]:
    selector = f"sluice.dev/pipeline={pipeline},sluice.dev/task={step}"
    return list(s.core.list_namespaced_pod(s.ns, label_selector=selector).items)


def stuck_events(s: Sluice, pipeline: str) -> list[Any]:
    return [e for e in s.events(pipeline) if e.reason == "StepStuck"]


def test_each_cause_is_named_in_the_status_and_kubectl_get_pl_and_normal_steps_are_not(
    s: Sluice, cluster: Cluster
) -> None:
    started = time.monotonic()
    s.pipeline(
        "causes",
        {
            "tasks": [
                inline("pull", podTemplate=waiting("ImagePullBackOff")),
                inline("image", podTemplate=waiting("ErrImagePull")),
                inline("config", podTemplate=waiting("CreateContainerConfigError")),
                inline("unsched", podTemplate={"spec": {"nodeSelector": {"no-such": "node"}}}),
                # Runs longer than the threshold, but its pod runs: nothing to report.
                inline(
                    "normal",
                    podTemplate={"metadata": {"annotations": {"sim.sluice.dev/duration": "8s"}}},
                ),
            ]
        },
    )
    for step, reason in (
        ("pull", "ImagePullBackOff"),
        ("image", "ErrImagePull"),
        ("config", "CreateContainerConfigError"),
        ("unsched", "Unschedulable"),
    ):
        wait_stuck(s, "causes", step, reason, timeout=SOON - (time.monotonic() - started))
    assert "simulated" in s.task_status("causes", "pull")["message"]
    assert "node" in s.task_status("causes", "unsched")["message"]  # the scheduler's words
    wide = cluster.kubectl("get", "pl", "causes", "-n", s.ns, "-o", "wide").stdout
    assert "Not started:" in wide and "ImagePullBackOff" in wide, wide
    s.wait_task("causes", "normal", "Succeeded", timeout=30)
    assert "reason" not in s.task_status("causes", "normal") or (
        s.task_status("causes", "normal")["reason"] == "Completed"
    )
    events = stuck_events(s, "causes")
    assert sorted(e.message.split('"')[1] for e in events) == ["config", "image", "pull", "unsched"]
    assert all((e.count or 1) == 1 for e in events)  # once per cause, not per look


def test_a_quota_refusing_the_pod_is_failed_create_and_lifting_it_moves_on(s: Sluice) -> None:
    quota = client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name="no-pods"),
        spec=client.V1ResourceQuotaSpec(hard={"pods": "0"}),
    )
    s.core.create_namespaced_resource_quota(s.ns, quota)
    wait_for(
        lambda: s.core.read_namespaced_resource_quota("no-pods", s.ns).status.hard or {},
        timeout=30,
        what="the quota's status",
    )
    s.pipeline("quota", {"tasks": [inline("a")]})
    wait_stuck(s, "quota", "a", "FailedCreate")
    assert "exceeded quota" in s.task_status("quota", "a")["message"]
    s.core.delete_namespaced_resource_quota("no-pods", s.ns)
    st = s.wait_phase("quota", "Succeeded", timeout=60)
    assert st["tasks"][0]["attempts"] == 1  # the same attempt went on by itself


def test_pending_timeout_fails_the_attempt_and_retries_it(s: Sluice) -> None:
    s.pipeline(
        "timeout",
        {
            "tasks": [
                inline(
                    "a",
                    podTemplate=waiting("ErrImagePull"),
                    pendingTimeoutSeconds=6,
                    retry={"limit": 1, "backoff": {"initialSeconds": 1}},
                )
            ]
        },
    )
    st = s.wait_phase("timeout", "Degraded", timeout=60)
    ts = st["tasks"][0]
    assert (ts["phase"], ts["attempts"], ts["reason"]) == ("Failed", 2, "ErrImagePull")
    assert "pendingTimeoutSeconds" in ts["message"]
    reasons = [e.reason for e in s.events("timeout")]
    assert "TaskRetrying" in reasons and "TaskFailed" in reasons
    # Each attempt's Job was deleted when it timed out: none is left running.
    wait_for(
        lambda: all(j.status.active in (None, 0) for j in s.jobs("timeout")),
        timeout=30,
        what="no active Job left",
    )


def test_fixes_move_the_pipeline_on_by_itself(s: Sluice) -> None:
    # The cause removed (the image now pulls, a node now fits): the same attempt runs.
    s.pipeline(
        "fixed",
        {
            "tasks": [
                inline("pull", podTemplate=waiting("ImagePullBackOff")),
                inline("unsched", podTemplate={"spec": {"nodeSelector": {"sluice-e2e": s.ns}}}),
            ]
        },
    )
    # A corrected Task restarts the stuck attempt at once.
    s.task("t", {"image": BUSYBOX, "podTemplate": waiting("CreateContainerConfigError")})
    s.pipeline("corrected", {"tasks": [{"name": "a", "taskRef": {"name": "t"}}]})
    wait_stuck(s, "fixed", "pull", "ImagePullBackOff")
    wait_stuck(s, "fixed", "unsched", "Unschedulable")
    wait_stuck(s, "corrected", "a", "CreateContainerConfigError")

    for pod in step_pods(s, "fixed", "pull"):
        s.core.patch_namespaced_pod(
            pod.metadata.name, s.ns, {"metadata": {"annotations": {WAITING: None}}}
        )
    node = s.core.list_node().items[0].metadata.name
    s.core.patch_node(node, {"metadata": {"labels": {"sluice-e2e": s.ns}}})
    try:
        s.task("t", {"image": BUSYBOX})
        st = s.wait_phase("fixed", "Succeeded", timeout=60)
        assert [t["attempts"] for t in st["tasks"]] == [1, 1]
        assert all("stuckAt" not in t for t in st["tasks"])
        st = s.wait_phase("corrected", "Succeeded", timeout=60)
        assert st["tasks"][0]["attempts"] == 2
        assert "DefinitionChanged" in {e.reason for e in s.events("corrected")}
    finally:
        s.core.patch_node(node, {"metadata": {"labels": {"sluice-e2e": None}}})


def test_a_restarted_operator_picks_a_stuck_step_up_again(
    cluster: Cluster,
    api_client: client.ApiClient,
    make_namespace: Callable[[str], str],
    tmp_path: Any,
) -> None:
    ns = make_namespace("restart-")
    s = Sluice(api_client, ns)

    def start(n: int) -> OperatorProcess:
        return OperatorProcess(
            cluster.kubeconfig,
            tmp_path / f"op{n}.log",
            namespaces=[ns],
            extra_args=["--stuck-after", str(STUCK_AFTER)],
        ).start()

    op = start(0)
    try:
        s.pipeline("r", {"tasks": [inline("a", podTemplate=waiting("ImagePullBackOff"))]})
        wait_stuck(s, "r", "a", "ImagePullBackOff")
        op.kill()
        # The cause changes while no operator runs: the new one reads it afresh.
        for pod in step_pods(s, "r", "a"):
            s.core.patch_namespaced_pod_status(
                pod.metadata.name,
                ns,
                {
                    "status": {
                        "containerStatuses": [
                            {
                                "name": "main",
                                "image": BUSYBOX,
                                "imageID": "",
                                "ready": False,
                                "restartCount": 0,
                                "state": {"waiting": {"reason": "ErrImagePull", "message": "gone"}},
                            }
                        ]
                    }
                },
            )
        op = start(1)
        wait_stuck(s, "r", "a", "ErrImagePull", timeout=SOON + 10)
        assert len(stuck_events(s, "r")) == 2  # one per cause, none again for the first
        for pod in step_pods(s, "r", "a"):
            s.core.patch_namespaced_pod(
                pod.metadata.name, ns, {"metadata": {"annotations": {WAITING: None}}}
            )
        st = s.wait_phase("r", "Succeeded", timeout=60)
        assert st["tasks"][0]["attempts"] == 1 and len(s.jobs("r")) == 1
    finally:
        op.stop()
