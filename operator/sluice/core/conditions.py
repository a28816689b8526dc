"""The pipeline's phase, message and conditions, from its steps' phases: a table.

The conditions follow Kubernetes' conventions (``kubectl wait --for=condition=...``):
``Succeeded``, ``Progressing`` and ``Degraded``, each set from a row of
:data:`CONDITIONS` keyed by the pipeline's phase (and, where it matters, whether
attempts are active or the pipeline is suspended).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

from sluice.api import (
    RETRY_ANNOTATION,
    Condition,
    ConditionStatus,
    PipelinePhase,
    PipelineStatus,
    TaskPhase,
)
from sluice.core.phases import P

__all__ = [
    "CONDITIONS",
    "ConditionRow",
    "condition_reason",
    "conditions_for",
    "phase_and_message",
    "set_condition",
    "set_conditions",
    "timed_out",
]

ConditionRow = tuple[str, ConditionStatus, str, bool]
"""(type, status, reason, whether it carries the status message) of one condition."""

_P = P
_ACTIVE: Final = frozenset({TaskPhase.RUNNING, TaskPhase.RETRYING})

#: (phase, active, suspended) -> the conditions to set; None in a key means "either".
#: A Failed phase leaves Succeeded as the failure set it (InvalidSpec or Timeout).
CONDITIONS: Final[
    dict[tuple[PipelinePhase | None, bool | None, bool | None], tuple[ConditionRow, ...]]
] = {
    (_P.SUCCEEDED, None, None): (
        ("Succeeded", "True", "Succeeded", True),
        ("Progressing", "False", "Finished", True),
        ("Degraded", "False", "Succeeded", False),
    ),
    (_P.DEGRADED, True, None): (
        ("Succeeded", "False", "TaskFailed", True),
        ("Progressing", "True", "TasksRunning", True),
        ("Degraded", "True", "TaskFailed", True),
    ),
    (_P.DEGRADED, False, None): (
        ("Succeeded", "False", "TaskFailed", True),
        ("Progressing", "False", "WaitingForFix", True),
        ("Degraded", "True", "TaskFailed", True),
    ),
    (_P.FAILED, None, None): (
        ("Progressing", "False", "Failed", True),
        ("Degraded", "False", "Failed", False),
    ),
    # Pending, Running (and a status that has no phase yet).
    (None, None, False): (
        ("Succeeded", "Unknown", "Running", True),
        ("Progressing", "True", "TasksRunning", True),
        ("Degraded", "False", "NoFailure", False),
    ),
    (None, None, True): (
        ("Succeeded", "Unknown", "Running", True),
        ("Progressing", "False", "Suspended", True),
        ("Degraded", "False", "NoFailure", False),
    ),
}


def conditions_for(
    phase: PipelinePhase | None, active: bool, suspended: bool
) -> tuple[ConditionRow, ...]:
    """The row of :data:`CONDITIONS` for a pipeline in ``phase``."""
    if phase == _P.DEGRADED:
        return CONDITIONS[(phase, active, None)]
    if phase in (_P.SUCCEEDED, _P.FAILED):
        return CONDITIONS[(phase, None, None)]
    return CONDITIONS[(None, None, suspended)]


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """``conditions`` with ``type_`` set; its transition time moves only with its status."""
    old = next((c for c in conditions if c.type == type_), None)
    changed_status = old is None or old.status != status
    cond = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=now if changed_status or old is None else old.last_transition_time,
        observed_generation=generation,
    )
    return [c for c in conditions if c.type != type_] + [cond]


def set_conditions(
    st: PipelineStatus,
    rows: Sequence[ConditionRow],
    message: str,
    now: datetime,
    generation: int | None,
) -> None:
    """Set every condition of ``rows`` on ``st``."""
    for type_, status, reason, with_message in rows:
        st.conditions = set_condition(
            st.conditions, type_, status, reason, message if with_message else "", now, generation
        )


def condition_reason(st: PipelineStatus, type_: str) -> str | None:
    return next((c.reason for c in st.conditions if c.type == type_), None)


def timed_out(st: PipelineStatus) -> bool:
    """The run failed on its timeout: terminal until a rerun."""
    return st.phase == _P.FAILED and condition_reason(st, "Succeeded") == "Timeout"


def phase_and_message(
    st: PipelineStatus, steps: Sequence[tuple[str, TaskPhase]]
) -> tuple[PipelinePhase | None, str | None]:
    """The pipeline's phase and message from its steps' (name, phase), in spec order.

    A timed-out run keeps its phase and message; a run with nothing running and nothing
    failed keeps its phase too unless it is (still) waiting to start.
    """
    phases = [p for _, p in steps]
    total = len(phases)
    skipped = phases.count(TaskPhase.SKIPPED)
    done = phases.count(TaskPhase.SUCCEEDED) + skipped
    failed = [n for n, p in steps if p == TaskPhase.FAILED]
    active = any(p in _ACTIVE for p in phases)
    if timed_out(st):
        return st.phase, st.message
    if done == total and skipped:
        return _P.SUCCEEDED, f"{total - skipped} of {total} steps succeeded, {skipped} skipped."
    if done == total:
        return _P.SUCCEEDED, (
            "The step succeeded." if total == 1 else f"All {total} steps succeeded."
        )
    if failed:
        names = ", ".join(failed[:5]) + (" ..." if len(failed) > 5 else "")
        n_blocked = phases.count(TaskPhase.BLOCKED)
        return _P.DEGRADED, (
            f"Task{'s' if len(failed) > 1 else ''} {names} failed past the retry budget"
            + (f"; {n_blocked} blocked" if n_blocked else "")
            + ("; other tasks still running" if active else "")
            + f". Fix the task, or annotate {RETRY_ANNOTATION}=<new value> to retry."
        )
    if active:
        running = phases.count(TaskPhase.RUNNING)
        retrying = phases.count(TaskPhase.RETRYING)
        message = f"{running} running" + (f", {retrying} waiting to retry" if retrying else "")
        return _P.RUNNING, message + f", {done} of {total} done."
    if TaskPhase.PENDING in phases and st.phase in (None, _P.PENDING, _P.FAILED):
        return _P.PENDING, "Waiting to start."
    return st.phase, st.message
