"""core.stuck: steps whose pod does not get going are named, and fail over to a retry."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sluice.core.jobevents import JobEvent, observe_event
from sluice.core.pods import PodView, observe_pod
from sluice.core.stuck import STARTED, stuck_cause
from support.world import World

IMG = {"image": "busybox:1.36"}


def pod(job: str, **status: Any) -> PodView:
    return observe_pod(
        {
            "metadata": {
                "name": f"{job}-x",
                "namespace": "ns",
                "labels": {"batch.kubernetes.io/job-name": job},
                "creationTimestamp": "2026-11-26T12:00:01Z",
            },
            "status": status,
        }
    )


def waiting(job: str, reason: str, message: str = "") -> PodView:
    state = {"waiting": {"reason": reason, "message": message}}
    return pod(job, phase="Pending", containerStatuses=[{"name": "main", "state": state}])


def running(job: str) -> PodView:
    state = {"running": {"startedAt": "2026-11-26T12:00:02Z"}}
    return pod(job, phase="Running", containerStatuses=[{"name": "main", "state": state}])


def unschedulable(job: str) -> PodView:
    cond = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.",
    }
    return pod(job, phase="Pending", conditions=[cond])


def quota_event() -> JobEvent:
    return observe_event(
        {
            "type": "Warning",
            "reason": "FailedCreate",
            "message": 'Error creating: pods "x" is forbidden: exceeded quota: q',
            "lastTimestamp": "2026-11-26T12:00:05Z",
        }
    )


def world(**task: Any) -> World:
    return World.of({"tasks": [{"name": "a", "task": {**IMG, **task}}]})


def job_name(w: World) -> str:
    return str(w.job_of("a")["metadata"]["name"])


def test_a_step_is_not_looked_at_before_the_threshold() -> None:
    w = world()
    plan = w.reconcile()
    assert plan.diagnose == []
    assert plan.requeue_after == 30  # woken at the threshold, no polling
    w.advance(29)
    assert w.reconcile().diagnose == []


def test_past_the_threshold_the_shell_is_asked_and_the_cause_named_once() -> None:
    w = world()
    w.reconcile()
    w.advance(31)
    plan = w.reconcile()
    assert plan.diagnose == [job_name(w)]  # nothing known yet: asked, nothing decided
    assert w.task_status("a").get("stuckAt") is None
    w.pods[job_name(w)] = [waiting(job_name(w), "ImagePullBackOff", 'Back-off pulling "x"')]
    plan = w.reconcile()
    ts = w.task_status("a")
    assert (ts["phase"], ts["reason"], ts["message"]) == (
        "Running",
        "ImagePullBackOff",
        'Back-off pulling "x"',
    )
    assert ts["stuckAt"] == "2026-11-26T12:00:31Z"
    assert [e.reason for e in plan.events] == ["StepStuck"]
    assert "ImagePullBackOff" in w.status["message"]
    assert plan.requeue_after == 10  # looked at again while stuck
    w.advance(10)
    plan = w.reconcile()
    assert plan.events == [] and plan.diagnose == [job_name(w)]  # same cause: no new Event
    w.pods[job_name(w)] = [waiting(job_name(w), "ErrImagePull", "not found")]
    plan = w.reconcile()
    assert [e.reason for e in plan.events] == ["StepStuck"]  # a new cause: one more


def test_the_reason_clears_as_soon_as_the_pod_runs_and_no_more_looks() -> None:
    w = world()
    w.reconcile()
    w.advance(31)
    w.pods[job_name(w)] = [waiting(job_name(w), "CreateContainerConfigError", "no cm")]
    w.reconcile()
    assert w.task_status("a")["reason"] == "CreateContainerConfigError"
    w.pods[job_name(w)] = [running(job_name(w))]
    plan = w.reconcile()
    ts = w.task_status("a")
    assert ts["phase"] == "Running" and "reason" not in ts and "stuckAt" not in ts
    assert plan.diagnose == [] and plan.requeue_after is None
    assert "Not started" not in w.status["message"]


def test_a_normal_step_costs_nothing_once_its_pod_is_known_running() -> None:
    w = world()
    w.reconcile()
    w.advance(60)
    w.pods[job_name(w)] = [running(job_name(w))]
    plan = w.reconcile()
    assert plan.diagnose == [] and plan.events == [] and plan.status is None


def test_unschedulable_and_failed_create_are_named() -> None:
    w = World.of({"tasks": [{"name": "a", "task": IMG}, {"name": "b", "task": IMG}]})
    w.reconcile()
    w.advance(31)
    a, b = (str(w.job_of(n)["metadata"]["name"]) for n in "ab")
    w.pods[a] = [unschedulable(a)]
    w.pods[b] = []
    w.job_events[b] = [quota_event()]
    w.reconcile()
    assert w.task_status("a")["reason"] == "Unschedulable"
    assert "node affinity/selector" in w.task_status("a")["message"]
    assert w.task_status("b")["reason"] == "FailedCreate"
    assert "exceeded quota" in w.task_status("b")["message"]
    assert "1 more" in w.status["message"]


def test_pending_timeout_fails_the_attempt_and_retries_it() -> None:
    w = World.of(
        {
            "tasks": [
                {
                    "name": "a",
                    "task": {**IMG, "pendingTimeoutSeconds": 60},
                    "retry": {"limit": 1, "backoff": {"initialSeconds": 5}},
                }
            ]
        }
    )
    w.reconcile()
    first = job_name(w)
    w.advance(31)
    w.pods[first] = [waiting(first, "ImagePullBackOff", "back-off")]
    plan = w.reconcile()
    assert plan.requeue_after == 10
    w.advance(29)
    plan = w.reconcile()
    assert plan.delete == [first]
    ts = w.task_status("a")
    assert (ts["phase"], ts["reason"]) == ("Retrying", "ImagePullBackOff")
    assert "pendingTimeoutSeconds" in ts["message"] and "stuckAt" not in ts
    assert plan.transitions[-1].failure_kind == "PodFailure"
    w.advance(5)
    plan = w.reconcile()
    assert len(plan.create) == 1 and job_name(w) != first
    assert w.task_phase("a") == "Running"


def test_the_pipeline_default_pending_timeout_applies_and_the_step_overrides_it() -> None:
    spec = {
        "pendingTimeoutSeconds": 40,
        "tasks": [
            {"name": "a", "task": IMG, "retry": {"limit": 0}},
            {"name": "b", "task": IMG, "pendingTimeoutSeconds": 100},
        ],
    }
    w = World.of(spec)
    w.reconcile()
    w.advance(41)
    for n in "ab":
        j = str(w.job_of(n)["metadata"]["name"])
        w.pods[j] = [unschedulable(j)]
    w.reconcile()
    assert w.task_phase("a") == "Failed" and w.task_status("a")["reason"] == "Unschedulable"
    assert w.task_phase("b") == "Running" and w.task_status("b")["reason"] == "Unschedulable"


def test_a_corrected_task_restarts_the_stuck_attempt_at_once() -> None:
    w = World.of({"tasks": [{"name": "a", "taskRef": {"name": "t"}}]}, tasks={"t": dict(IMG)})
    w.reconcile()
    first = job_name(w)
    w.advance(31)
    w.pods[first] = [waiting(first, "ErrImagePull", "not found")]
    w.reconcile()
    w.tasks["t"] = {"spec": {"image": "busybox:1.37"}}
    plan = w.reconcile()
    assert plan.delete == [first]
    assert [m["spec"]["template"]["spec"]["containers"][0]["image"] for m in plan.create] == [
        "busybox:1.37"
    ]
    assert any(e.reason == "DefinitionChanged" for e in plan.events)
    ts = w.task_status("a")
    assert ts["phase"] == "Running" and "stuckAt" not in ts


def test_a_changed_task_does_not_restart_a_step_that_is_not_stuck() -> None:
    w = World.of({"tasks": [{"name": "a", "taskRef": {"name": "t"}}]}, tasks={"t": dict(IMG)})
    w.reconcile()
    w.tasks["t"] = {"spec": {"image": "busybox:1.37"}}
    assert w.reconcile().delete == []


def test_a_restarted_operator_picks_a_stuck_step_up_again() -> None:
    w = world()
    w.reconcile()
    w.advance(31)
    w.pods[job_name(w)] = [waiting(job_name(w), "ImagePullBackOff", "x")]
    w.reconcile()
    w.pods.clear()  # a new operator knows no pods yet: asks again, keeps the status
    plan = w.reconcile()
    assert plan.diagnose == [job_name(w)] and plan.events == []
    assert w.task_status("a")["reason"] == "ImagePullBackOff"


def test_stuck_cause_prefers_a_started_pod_and_ignores_deleting_ones() -> None:
    assert stuck_cause([waiting("j", "ErrImagePull"), running("j")], []) == STARTED
    assert stuck_cause([], []) == ("NoPod", "the Job has not created a pod yet")
    assert stuck_cause([pod("j", phase="Pending")], [])[0] == "PodPending"


@given(st.lists(st.sampled_from(["ErrImagePull", "ImagePullBackOff", "run", "unsched"])))
def test_stuck_cause_is_started_exactly_when_a_pod_runs(kinds: list[str]) -> None:
    make = {
        "run": running,
        "unsched": unschedulable,
    }
    pods = [make[k]("j") if k in make else waiting("j", k) for k in kinds]
    cause = stuck_cause(pods, [quota_event()])
    assert (cause == STARTED) == ("run" in kinds)
    if not kinds:
        assert cause[0] == "FailedCreate"
