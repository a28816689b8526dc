"""What the reconciler reads of a pod of one of Sluice's Jobs: :class:`PodView`.

One description of a pod, made once at ingest (by the pod view's watch, or by
a targeted read of one Job's pods) and shared by the three things that need
it: a step's pod that has succeeded (the hand-off need not wait for the Job
controller's batched `Complete`), the results a step's `main` container wrote
to its termination message, and the reason a step's pod is not getting going
(an image that does not pull, a missing ConfigMap, no node that fits).

Only the `main` container is read: it is the step's work; sidecars a user's
pod template adds are not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sluice.api import parse_rfc3339
from sluice.core import naming
from sluice.core.jobspec import CONTAINER_NAME

__all__ = ["JOB_NAME_LABELS", "PodView", "observe_pod"]

JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
"""The labels the Job controller puts on a Job's pods, newest first."""


@dataclass(frozen=True, slots=True)
class PodView:
    """What Sluice needs to know of one pod of one of its Jobs."""

    name: str
    namespace: str
    job: str
    """The Job the pod belongs to ('' when it carries no job-name label)."""
    pipeline: str | None
    """The pipeline's exact name, when the pod template carries it."""
    uid: str
    phase: str
    """`Pending`, `Running`, `Succeeded`, `Failed` or `Unknown`."""
    created_at: datetime | None
    deleting: bool
    started: bool
    """The `main` container has run (it is running or has terminated)."""
    waiting_reason: str | None
    """Why `main` is waiting (`ErrImagePull`, `CreateContainerConfigError`, ...)."""
    waiting_message: str | None
    unschedulable: str | None
    """The scheduler's message when the pod's `PodScheduled` is False/Unschedulable."""
    exit_code: int | None
    finished_at: datetime | None
    termination_message: str | None
    """What `main` wrote to its termination message file (the results channel)."""

    @property
    def succeeded(self) -> bool:
        return self.phase == "Succeeded"


def _time(value: Any) -> datetime | None:
    return parse_rfc3339(str(value)) if value else None


def _main_status(status: Mapping[str, Any]) -> Mapping[str, Any]:
    for cs in status.get("containerStatuses") or []:
        if cs.get("name") == CONTAINER_NAME:
            found: Mapping[str, Any] = cs
            return found
    return {}


def _unschedulable(status: Mapping[str, Any]) -> str | None:
    for cond in status.get("conditions") or []:
        if (
            cond.get("type") == "PodScheduled"
            and cond.get("status") == "False"
            and cond.get("reason") == "Unschedulable"
        ):
            return str(cond.get("message") or "no node fits the pod")
    return None


def observe_pod(pod: Mapping[str, Any]) -> PodView:
    """Read a pod dict (from a watch event or a list) into a PodView."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    status = pod.get("status") or {}
    main = _main_status(status)
    state = main.get("state") or {}
    waiting = state.get("waiting") or {}
    terminated = state.get("terminated") or {}
    job = next((labels[k] for k in JOB_NAME_LABELS if labels.get(k)), "")
    exit_code = terminated.get("exitCode")
    return PodView(
        name=meta.get("name", ""),
        namespace=meta.get("namespace", ""),
        job=job,
        pipeline=(meta.get("annotations") or {}).get(naming.ANNOTATION_PIPELINE),
        uid=meta.get("uid", ""),
        phase=status.get("phase") or "Pending",
        created_at=_time(meta.get("creationTimestamp")),
        deleting=bool(meta.get("deletionTimestamp")),
        started=bool(state.get("running") or terminated),
        waiting_reason=waiting.get("reason") or None,
        waiting_message=waiting.get("message") or None,
        unschedulable=_unschedulable(status),
        exit_code=int(exit_code) if exit_code is not None else None,
        finished_at=_time(terminated.get("finishedAt")),
        termination_message=terminated.get("message") if terminated else None,
    )
