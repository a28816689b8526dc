"""Names, labels and annotations of the Kubernetes objects Sluice creates.

A Job's name is the operator's idempotency key: the reconciler derives it
from ``(pipeline, task, run, attempt)`` and creates the Job with that name, so
a reconcile repeated after a crash gets ``AlreadyExists`` instead of a second
Job. The name must therefore be deterministic, a valid DNS-1123 label
(the Job controller copies it into the pod label ``job-name``, capped at 63
characters) and distinct for distinct inputs.
"""

from __future__ import annotations

import hashlib
import re

from sluice.k8s.syntax import DNS_LABEL_MAX, is_dns_label, is_dns_subdomain, is_label_value

__all__ = [
    "ANNOTATION_PIPELINE",
    "ANNOTATION_RETRY_BASE",
    "ANNOTATION_SPEC_HASH",
    "ANNOTATION_TASK",
    "LABEL_ATTEMPT",
    "LABEL_COMBINATION",
    "LABEL_MANAGED_BY",
    "LABEL_PIPELINE",
    "LABEL_RUN",
    "LABEL_TASK",
    "MANAGED_BY",
    "MAX_NAME_LENGTH",
    "is_dns_label",
    "is_dns_subdomain",
    "is_label_value",
    "job_annotations",
    "job_labels",
    "job_name",
    "label_value",
]

LABEL_PIPELINE = "sluice.dev/pipeline"
LABEL_TASK = "sluice.dev/task"
LABEL_RUN = "sluice.dev/run"
LABEL_ATTEMPT = "sluice.dev/attempt"
LABEL_COMBINATION = "sluice.dev/combination"
"""The index of a matrixed step's combination (``sluice.core.matrix``); absent otherwise."""
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "sluice"

ANNOTATION_PIPELINE = "sluice.dev/pipeline-name"
ANNOTATION_TASK = "sluice.dev/task-name"
ANNOTATION_SPEC_HASH = "sluice.dev/spec-hash"
ANNOTATION_RETRY_BASE = "sluice.dev/retry-base"
"""The attempt count at which the retry budget of a Job's attempt began: lets a
restarted operator rebuild the budget from the Jobs alone."""

MAX_NAME_LENGTH = DNS_LABEL_MAX
"""Longest Job name: the Job controller copies it into a pod label value."""

# is_dns_label, is_dns_subdomain and is_label_value are sluice.k8s.syntax's, re-exported.
_LABEL_VALUE_UNSAFE = re.compile(r"[^-A-Za-z0-9_.]")

_HASH_LENGTH = 8
"""Base36 characters of hash in Job names and shortened label values (36**8, about 2.8e12)."""
_PIPELINE_MIN = 16
"""When shortening, the pipeline part is cut down to this before the task part is cut."""

_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _hash36(data: str, length: int) -> str:
    """``length`` lowercase base36 characters of sha256(data): short, DNS-safe, stable."""
    n = int.from_bytes(hashlib.sha256(data.encode("utf-8")).digest(), "big")
    chars = []
    for _ in range(length):
        n, r = divmod(n, 36)
        chars.append(_BASE36[r])
    return "".join(chars)


def job_name(
    pipeline: str, task: str, run: int, attempt: int, combination: int | None = None
) -> str:
    """The deterministic name of the Job for one attempt of a task (or of one combination
    of a matrixed task).

    Shape ``{pipeline}-{task}-{h}-{run}-{attempt}``, with dots in the pipeline
    mapped to '-'. ``h`` (8 base36 chars of a hash of pipeline and task) is
    always present because the dash-joined parts are ambiguous: pipeline
    ``a-b`` task ``c`` and pipeline ``a`` task ``b-c`` (or pipeline ``a.b``
    and ``a-b``) would otherwise share names in one namespace. When the name
    would exceed 63 characters the pipeline part is cut as far as needed (but
    not below 16 characters), then the task part, and dashes left dangling at
    the cuts are dropped. ``h``, ``run`` and ``attempt`` are never cut, so the
    name always ends in ``-{h}-{run}-{attempt}``.

    A combination of a matrixed step (``combination``, its index, from 0) adds
    ``-c{combination}`` after ``h``: ``{pipeline}-{task}-{h}-c{combination}-{run}-{attempt}``,
    never cut either. The ``c`` keeps it apart from the all-digit run and attempt; without
    ``combination`` the name is exactly as before.

    Distinctness of look-alike or shortened inputs rests on the hash alone.
    36**8 (about 2.8e12) values make an accidental clash negligible, but not a
    deliberate one: a birthday search over pipeline names that share a long
    prefix finds two with the same Job name in about 1.7e6 tries.

    Raises ValueError for inputs Kubernetes would not accept (a pipeline that
    is not a DNS subdomain, a task that is not a DNS label, a run or attempt
    below 1) and for numbers too long to leave room for the names.
    """
    if not is_dns_subdomain(pipeline):
        raise ValueError(f"pipeline name {pipeline!r} is not a valid DNS subdomain")
    if not is_dns_label(task):
        raise ValueError(f"task name {task!r} is not a valid DNS label")
    for what, n in (("run", run), ("attempt", attempt)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{what} must be an integer >= 1, got {n!r}")
    c = ""
    if combination is not None:
        if isinstance(combination, bool) or not isinstance(combination, int) or combination < 0:
            raise ValueError(f"combination must be an integer >= 0, got {combination!r}")
        c = f"-c{combination}"
    h = _hash36(f"{pipeline}\x00{task}", _HASH_LENGTH)
    suffix = f"-{h}{c}-{run}-{attempt}"
    p, t = pipeline.replace(".", "-"), task
    room = MAX_NAME_LENGTH - len(suffix) - 1  # for p and t; 1 for the dash between them
    if len(p) + len(t) > room:
        if room < 2:
            raise ValueError(f"run {run} and attempt {attempt} are too long for a Job name")
        keep_t = min(len(t), max(room - _PIPELINE_MIN, room - len(p), 1))
        p, t = p[: room - keep_t].rstrip("-"), t[:keep_t].rstrip("-")
    return f"{p}-{t}{suffix}"


def label_value(s: str) -> str:
    """``s`` if it is a valid label value, else a valid, distinct stand-in.

    Pipeline names may be 253 characters, label values only 63: the stand-in
    is a readable prefix plus 8 hash characters of the full value (which the
    annotations carry verbatim).
    """
    if is_label_value(s):
        return s
    suffix = _hash36(s, _HASH_LENGTH)
    prefix = _LABEL_VALUE_UNSAFE.sub("-", s)[: MAX_NAME_LENGTH - _HASH_LENGTH - 1]
    prefix = prefix.strip("-_.")
    return f"{prefix}-{suffix}" if prefix else suffix


def job_labels(
    pipeline: str, task: str, run: int, attempt: int, combination: int | None = None
) -> dict[str, str]:
    """Labels that let the operator list a pipeline's Jobs by selector (and, for a
    combination of a matrixed step, its index)."""
    labels = {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_PIPELINE: label_value(pipeline),
        LABEL_TASK: label_value(task),
        LABEL_RUN: str(run),
        LABEL_ATTEMPT: str(attempt),
    }
    if combination is not None:
        labels[LABEL_COMBINATION] = str(combination)
    return labels


def job_annotations(pipeline: str, task: str, spec_hash: str) -> dict[str, str]:
    """Annotations with the full names (labels may be shortened) and the spec hash."""
    return {
        ANNOTATION_PIPELINE: pipeline,
        ANNOTATION_TASK: task,
        ANNOTATION_SPEC_HASH: spec_hash,
    }
