"""A step's own pod says it is done: :func:`promote`.

The Job controller writes a Job's ``Complete`` condition about a second after its
pod succeeds (it batches pod updates). For the Jobs Sluice builds (one pod,
``completions`` 1, ``backoffLimit`` 0, ``restartPolicy: Never``) a pod in phase
``Succeeded`` already is the attempt's success: nothing the Job controller does
afterwards can undo it. So a Job still ``Active`` whose pod (in the pod view) has
succeeded is read as ``Succeeded``, finished when its ``main`` container finished.

Only success is taken from the pod. A failure still comes from the Job's own
conditions (the pod failure policy, the backoff limit, the deadline), so the
retry semantics are the Job's, unchanged.

When the two disagree
    The Job's own condition wins while it is there to read: a Job already
    ``Complete`` or ``Failed``, or being deleted, is left as it is. Once a step is
    recorded ``Succeeded`` (from its pod or its Job) the status is the memory and
    the Job is not read again for that attempt: a Job that ends ``Failed`` after
    its pod succeeded (its ``activeDeadlineSeconds`` passing at the same moment)
    leaves the step succeeded -- its container did finish its work, exit code 0.
    A pod that is gone (deleted, or not in the view yet after a restart) says
    nothing: the step waits for the Job's condition, as before; a success the
    status already recorded is never lost, and none is ever invented.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from sluice.core.observe import JobView
from sluice.core.pods import PodView

__all__ = ["promote"]


def _succeeded_pod(job: JobView, pods: Sequence[PodView]) -> PodView | None:
    for pod in pods:
        if pod.succeeded and pod.job == job.name:
            return pod
    return None


def promote(jobs: Sequence[JobView], pods: Mapping[str, Sequence[PodView]]) -> list[JobView]:
    """The Jobs, with each Active one-pod Job whose pod succeeded read as Succeeded."""
    if not pods:
        return list(jobs)
    out: list[JobView] = []
    for job in jobs:
        pod = None
        if job.state == "Active" and not job.deleting and job.single_pod:
            pod = _succeeded_pod(job, pods.get(job.name, ()))
        if pod is not None:
            job = dataclasses.replace(
                job,
                state="Succeeded",
                reason="PodSucceeded",
                finished_at=pod.finished_at or job.finished_at,
            )
        out.append(job)
    return out
