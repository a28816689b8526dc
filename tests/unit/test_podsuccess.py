"""A step's own pod says it is done (sluice.core.podsuccess): the hand-off does not
wait for the Job controller's batched Complete, failures still come from the Job,
and the edge cases where the pod and the Job could disagree."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sluice.core.observe import observe_job
from sluice.core.pods import observe_pod
from sluice.core.podsuccess import promote
from support.world import World, ts

IMG = {"image": "busybox:1.36"}


def chain(n: int = 2, **extra: Any) -> World:
    tasks = [{"name": "s0", "task": dict(IMG), **extra}]
    tasks += [{"name": f"s{i}", "task": dict(IMG), "dependsOn": [f"s{i - 1}"]} for i in range(1, n)]
    return World.of({"tasks": tasks})


def test_the_pod_carries_the_pipelines_exact_name() -> None:
    w = chain()
    w.reconcile()
    template = w.job_of("s0")["spec"]["template"]
    assert template["metadata"]["annotations"]["sluice.dev/pipeline-name"] == "p"
    w.pod_succeeds("s0")
    assert observe_pod(w.pods[w.job_of("s0")["metadata"]["name"]][0]).pipeline == "p"


def test_a_succeeded_pod_hands_off_before_the_jobs_complete() -> None:
    w = chain()
    w.reconcile()
    w.advance(3)
    w.pod_succeeds("s0")
    w.advance(1)  # the Job is still Active
    w.reconcile()
    assert w.task_phase("s0") == "Succeeded"
    assert w.active_tasks() == {"s0", "s1"}  # s1 started; s0's Job not Complete yet
    assert w.task_status("s0")["finishedAt"] == ts(w.now.replace(second=3))
    # The Job's own Complete arrives later and agrees: nothing more happens.
    w.succeed("s0")
    plan = w.reconcile()
    assert not plan.create and w.task_phase("s0") == "Succeeded"
    assert len(w.created) == 2


def test_a_failure_still_comes_from_the_job_only() -> None:
    w = chain(retry={"limit": 1})
    w.reconcile()
    w.fail("s0")
    w.reconcile()
    assert w.task_phase("s0") == "Retrying"


def test_deadline_exceeded_at_the_same_moment_the_recorded_success_stands() -> None:
    w = chain(timeoutSeconds=5)
    w.reconcile()
    w.advance(5)
    w.pod_succeeds("s0")
    w.reconcile()
    assert w.task_phase("s0") == "Succeeded"
    # The Job controller's deadline fired in the same second: the Job says Failed.
    w.fail("s0", reason="DeadlineExceeded", message="Job was active longer than specified")
    w.reconcile()
    assert w.task_phase("s0") == "Succeeded"
    assert w.task_phase("s1") == "Running"


def test_a_job_that_failed_first_wins_over_its_pod() -> None:
    w = chain(timeoutSeconds=5)
    w.reconcile()
    w.advance(5)
    w.fail("s0", reason="DeadlineExceeded", message="Job was active longer than specified")
    w.pod_succeeds("s0")
    w.reconcile()
    assert w.task_phase("s0") in ("Retrying", "Failed")  # the Job's verdict, retried as such
    assert "s1" not in w.active_tasks()


def test_a_pod_deleted_after_success_loses_nothing() -> None:
    w = chain()
    w.reconcile()
    w.pod_succeeds("s0")
    w.reconcile()
    w.pods.clear()  # the pod is gone, the Job still Active
    w.reconcile()
    assert w.task_phase("s0") == "Succeeded"
    assert w.task_phase("s1") == "Running"


def test_restart_between_pod_and_job_keeps_a_recorded_success_and_invents_none() -> None:
    # Recorded: the restarted operator's pod view is empty, the Job still Active.
    w = chain()
    w.reconcile()
    w.pod_succeeds("s0")
    w.reconcile()
    w.pods.clear()
    w.settle()
    assert w.task_phase("s0") == "Succeeded"
    # Not recorded (the status write was lost): no success without evidence.
    w2 = chain()
    w2.reconcile()
    w2.pod_succeeds("s0")
    w2.pods.clear()
    w2.settle()
    assert w2.task_phase("s0") == "Running"
    assert w2.active_tasks() == {"s0"}
    w2.succeed("s0")  # the Job's Complete brings it, as before the pod view
    w2.reconcile()
    assert w2.task_phase("s0") == "Succeeded"


def test_a_deleting_job_or_one_of_many_pods_is_not_promoted() -> None:
    w = chain()
    w.reconcile()
    w.pod_succeeds("s0")
    name = w.job_of("s0")["metadata"]["name"]
    pods = {name: [observe_pod(p) for p in w.pods[name]]}
    job = dict(w.job_of("s0"))
    view = observe_job(job)
    assert view is not None
    assert promote([view], pods)[0].state == "Succeeded"
    deleting = {**job, "metadata": {**job["metadata"], "deletionTimestamp": ts(w.now)}}
    many = {**job, "spec": {**job["spec"], "completions": 3}}
    for other in (deleting, many):
        v = observe_job(other)
        assert v is not None and promote([v], pods)[0].state == "Active"


@given(
    phases=st.lists(
        st.sampled_from(["Pending", "Running", "Succeeded", "Failed", "Unknown"]), max_size=3
    ),
    job_state=st.sampled_from(["active", "complete", "failed"]),
)
def test_promotion_only_ever_turns_an_active_job_with_a_succeeded_pod_into_success(
    phases: list[str], job_state: str
) -> None:
    w = chain()
    w.reconcile()
    if job_state == "complete":
        w.succeed("s0")
    elif job_state == "failed":
        w.fail("s0")
    job = w.job_of("s0")
    view = observe_job(job)
    assert view is not None
    name = view.name
    pods = {
        name: [
            observe_pod(
                {
                    "metadata": {
                        "name": f"x{i}",
                        "labels": {"batch.kubernetes.io/job-name": name},
                    },
                    "status": {"phase": phase},
                }
            )
            for i, phase in enumerate(phases)
        ]
    }
    (after,) = promote([view], pods)
    if view.state == "Active" and "Succeeded" in phases:
        assert after.state == "Succeeded"
    else:
        assert after == view
