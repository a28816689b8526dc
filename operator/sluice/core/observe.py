"""What the reconciler reads of a Job: one description of a Job, :class:`JobView`."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sluice.api import parse_rfc3339
from sluice.core import naming

__all__ = ["JobState", "JobView", "observe_job"]

JobState = Literal["Active", "Succeeded", "Failed"]


@dataclass(frozen=True, slots=True)
class JobView:
    """What the reconciler needs to know of one Job it owns.

    The operator keeps one for every Job of every pipeline (10,000 at 1,000 pipelines of
    10 steps): slots, and the strings many Jobs share (step, spec hash, reason) interned
    at ingest (:func:`observe_job`)."""

    name: str
    task: str
    """The name of the pipeline step the Job is an attempt of."""
    run: int
    attempt: int
    retry_base: int
    spec_hash: str | None
    state: JobState
    reason: str | None
    message: str | None
    created_at: datetime | None
    finished_at: datetime | None
    deleting: bool
    combination: int | None = None
    """The index of the combination of a matrixed step (``sluice.dev/combination``);
    None for a plain step's Job."""
    single_pod: bool = True
    """One pod, once (``completions`` and ``parallelism`` 1 or unset): its pod's
    success is the Job's (``sluice.core.podsuccess``)."""

    @property
    def step(self) -> str:
        """The pipeline step the Job is an attempt of (the field keeps its older name)."""
        return self.task


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    return parse_rfc3339(str(value))


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _combination(value: Any) -> int | None:
    """The combination label's index; None when absent or not a non-negative integer."""
    if not isinstance(value, str) or not value.isdecimal():
        return None
    return int(value)


def _outcome(
    status: Mapping[str, Any],
) -> tuple[JobState, str | None, str | None, datetime | None]:
    """(state, reason, message, finished at) from a Job's status conditions."""
    state: JobState = "Active"
    reason = message = None
    finished = None
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            state = "Succeeded"
            finished = _parse_time(status.get("completionTime") or cond.get("lastTransitionTime"))
        elif cond.get("type") == "Failed":
            state = "Failed"
            reason, message = cond.get("reason"), cond.get("message")
            finished = _parse_time(cond.get("lastTransitionTime"))
    return state, reason, message, finished


def _intern(value: Any) -> Any:
    return sys.intern(value) if type(value) is str else value


def observe_job(job: Mapping[str, Any]) -> JobView | None:
    """Read a Job dict into a JobView; None when it is not one of ours."""
    meta = job.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    step = annotations.get(naming.ANNOTATION_TASK)
    if not step or naming.LABEL_RUN not in labels:
        return None
    state, reason, message, finished = _outcome(job.get("status") or {})
    spec_hash = annotations.get(naming.ANNOTATION_SPEC_HASH)
    return JobView(
        name=meta.get("name", ""),
        task=_intern(step),
        run=_int(labels.get(naming.LABEL_RUN)),
        attempt=_int(labels.get(naming.LABEL_ATTEMPT)),
        retry_base=_int(annotations.get(naming.ANNOTATION_RETRY_BASE)),
        spec_hash=_intern(spec_hash),
        state=state,
        reason=_intern(reason),
        message=message,
        created_at=_parse_time(meta.get("creationTimestamp")),
        finished_at=finished,
        deleting=bool(meta.get("deletionTimestamp")),
        combination=_combination(labels.get(naming.LABEL_COMBINATION)),
        single_pod=_single_pod(job.get("spec") or {}),
    )


def _single_pod(spec: Mapping[str, Any]) -> bool:
    return all(spec.get(k) in (None, 1) for k in ("completions", "parallelism"))
