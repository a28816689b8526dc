"""core.pods: one pod of a Sluice Job, read once into a PodView."""

from __future__ import annotations

from sluice.core import naming
from sluice.core.pods import observe_pod


def _pod(**status: object) -> dict[str, object]:
    return {
        "metadata": {
            "name": "p-1",
            "namespace": "ns",
            "uid": "u1",
            "labels": {"batch.kubernetes.io/job-name": "pl-train-r1-a0"},
            "annotations": {naming.ANNOTATION_PIPELINE: "pl"},
            "creationTimestamp": "2026-12-01T10:00:00Z",
        },
        "status": status,
    }


def test_a_new_pod_is_pending_and_has_not_started() -> None:
    view = observe_pod(_pod())
    assert (view.job, view.pipeline, view.phase, view.started) == (
        "pl-train-r1-a0",
        "pl",
        "Pending",
        False,
    )
    assert view.termination_message is None and view.exit_code is None


def test_the_main_container_waiting_reason_is_read_not_a_sidecar() -> None:
    view = observe_pod(
        _pod(
            containerStatuses=[
                {"name": "sidecar", "state": {"waiting": {"reason": "Other"}}},
                {
                    "name": "main",
                    "state": {"waiting": {"reason": "ErrImagePull", "message": "no tag"}},
                },
            ]
        )
    )
    assert (view.waiting_reason, view.waiting_message, view.started) == (
        "ErrImagePull",
        "no tag",
        False,
    )


def test_unschedulable_carries_the_scheduler_message() -> None:
    view = observe_pod(
        _pod(
            conditions=[
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes",
                }
            ]
        )
    )
    assert view.unschedulable == "0/3 nodes"


def test_a_succeeded_pod_gives_its_termination_message() -> None:
    terminated = {"exitCode": 0, "finishedAt": "2026-12-01T10:00:05Z", "message": '{"auc": "0.9"}'}
    view = observe_pod(
        _pod(
            phase="Succeeded",
            containerStatuses=[{"name": "main", "state": {"terminated": terminated}}],
        )
    )
    assert view.succeeded and view.started and view.exit_code == 0
    assert view.termination_message == '{"auc": "0.9"}'
    assert view.finished_at is not None and view.finished_at.second == 5


def test_the_older_job_name_label_is_understood() -> None:
    pod = _pod()
    pod["metadata"]["labels"] = {"job-name": "old"}  # type: ignore[index]
    assert observe_pod(pod).job == "old"
