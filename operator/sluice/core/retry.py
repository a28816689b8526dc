"""Retry policy: what kind of failure happened, whether to retry, and when.

Sluice's Jobs run one pod and never retry by themselves (``backoffLimit: 0``);
their ``podFailurePolicy`` fails the Job at once and records why:

* rule 0: ``{action: FailJob, onPodConditions: [{type: DisruptionTarget}]}``
  (eviction, preemption, node loss), and
* rule 1: ``{action: FailJob, onExitCodes: {operator: NotIn, values: [0]}}``
  (the container's own non-zero exit).

so the Job's ``Failed`` condition is enough to tell a bug from bad luck,
which the user's ``retry.retryOn`` can treat differently.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Final

from sluice.api import FailureKind, RetryPolicy

__all__ = [
    "DEADLINE_EXCEEDED",
    "EVICTED",
    "FAILED",
    "FAILURE_KINDS",
    "JOB_REJECTED",
    "POD_FAILURE",
    "FailureKind",
    "backoff_seconds",
    "classify_job_failure",
    "exit_code_from_message",
    "failure_words",
    "is_retryable",
    "may_retry",
    "policy_delay",
]

# The failure kinds are api.FailureKind's (the values of retry.retryOn); these names are
# its members, kept for readers of this module.
FAILED: Final = FailureKind.FAILED
DEADLINE_EXCEEDED: Final = FailureKind.DEADLINE_EXCEEDED
EVICTED: Final = FailureKind.EVICTED
POD_FAILURE: Final = FailureKind.POD_FAILURE

FAILURE_KINDS: tuple[FailureKind, ...] = tuple(FailureKind)

JOB_REJECTED: Final = "JobRejected"
"""The reason of an attempt whose Job the API server refused to create because of its
spec (a 400 or 422: strict field validation, an invalid field). The shell reports
such an attempt as a failed Job of that reason; it is never retried: the spec is
the user's to fix, and a fixed Task starts a new attempt as after any failure."""

_EXIT_CODE = re.compile(r"\bexit code (-?\d+)\b", re.IGNORECASE)


def backoff_seconds(initial: float, factor: float, maximum: float, failures: int) -> float:
    """Delay before the next attempt after ``failures`` consecutive failures.

    ``initial * factor ** (failures - 1)``, capped at ``maximum``. The power is
    taken in floating point (never as a huge int) and an overflow falls back
    to logarithms, so a task that has failed 10,000 times costs nothing. Raises ValueError
    for a negative or non-finite delay, ``factor < 1`` (the delay must never
    shrink) or ``failures < 1``; the API schema should reject these first.
    """
    if failures < 1:
        raise ValueError(f"failures must be >= 1, got {failures}")
    if not (math.isfinite(initial) and initial >= 0):
        raise ValueError(f"initial delay must be a finite number >= 0, got {initial}")
    if not (math.isfinite(maximum) and maximum >= 0):
        raise ValueError(f"maximum delay must be a finite number >= 0, got {maximum}")
    if not (math.isfinite(factor) and factor >= 1):
        raise ValueError(f"backoff factor must be a finite number >= 1, got {factor}")
    if initial == 0:
        return 0.0
    try:
        delay = initial * float(factor) ** (failures - 1)
    except OverflowError:
        # factor ** n is past 1.8e308; only a vanishing initial delay keeps the
        # product under the cap, so redo it in log space instead of assuming.
        log_delay = math.log(initial) + (failures - 1) * math.log(factor)
        if maximum == 0 or log_delay >= math.log(maximum):
            return float(maximum)
        delay = math.exp(log_delay)
    return float(min(delay, maximum))


def exit_code_from_message(message: str | None) -> int | None:
    """The ``N`` of the first ``exit code N`` in a Job controller message, if any."""
    if not message:
        return None
    match = _EXIT_CODE.search(message)
    return int(match.group(1)) if match else None


def classify_job_failure(reason: str | None, message: str | None) -> FailureKind:
    """Map a Job's ``Failed`` condition (reason, message) to a failure kind.

    Anything unrecognised is ``PodFailure``: something other than the user's
    code ended the attempt, which is the safest guess for a retry decision.
    """
    if reason == "DeadlineExceeded":
        return DEADLINE_EXCEEDED
    if reason == "PodFailurePolicy":
        # "Pod ns/x has condition DisruptionTarget matching FailJob rule at index 0"
        if message and "DisruptionTarget" in message:
            return EVICTED
        # "Container main for pod ns/x failed with exit code 3 matching FailJob rule at index 1"
        if exit_code_from_message(message) is not None:
            return FAILED
        return POD_FAILURE
    if reason in ("BackoffLimitExceeded", JOB_REJECTED):
        return FAILED
    return POD_FAILURE


def is_retryable(kind: FailureKind, on: Iterable[FailureKind]) -> bool:
    """Whether a failure of ``kind`` is retried under a policy's ``retry.retryOn``."""
    return kind in set(on)


def may_retry(kind: FailureKind, reason: str, policy: RetryPolicy, *, final: bool = False) -> bool:
    """Whether a failed attempt of this kind and reason may be retried at all: its kind is
    in ``retry.retryOn``, its Job was not rejected (``JOB_REJECTED``) and it is not marked
    ``final``. The retry limit is the caller's to check."""
    return is_retryable(kind, policy.retry_on) and reason != JOB_REJECTED and not final


def policy_delay(policy: RetryPolicy, failures: int) -> float:
    """``backoff_seconds`` under ``policy``'s backoff, after ``failures`` failures."""
    b = policy.backoff
    return backoff_seconds(b.initial_seconds, b.factor, b.max_seconds, failures)


def failure_words(reason: str | None, message: str | None, kind: FailureKind) -> tuple[str, str]:
    """The reason and message a user reads for a failed Job.

    A plain non-zero exit fails the Job through its podFailurePolicy (above), so the Job
    says ``PodFailurePolicy``: easily taken for the retryOn kind ``PodFailure``. Such a
    failure is named ``ExitCode``, with the code first.
    """
    code = exit_code_from_message(message)
    if reason == "PodFailurePolicy" and kind == FailureKind.FAILED and code is not None:
        return "ExitCode", f"exit code {code}: {message}"
    return reason or "Failed", message or ""
