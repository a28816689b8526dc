"""The phase enums' members as plain class attributes, for the reconcile's hot loops.

Python 3.11 looks an enum member up through a descriptor (``TaskPhase.RUNNING`` costs a
Python-level call); a reconcile of a large pipeline compares phases many thousand times,
so the stages read them from here: ``T.RUNNING is TaskPhase.RUNNING``.
"""

from __future__ import annotations

from typing import Final

from sluice.api import PipelinePhase, TaskPhase

__all__ = ["P", "T"]


class T:
    """TaskPhase's members."""

    PENDING: Final = TaskPhase.PENDING
    RUNNING: Final = TaskPhase.RUNNING
    RETRYING: Final = TaskPhase.RETRYING
    SUCCEEDED: Final = TaskPhase.SUCCEEDED
    FAILED: Final = TaskPhase.FAILED
    BLOCKED: Final = TaskPhase.BLOCKED
    SKIPPED: Final = TaskPhase.SKIPPED


class P:
    """PipelinePhase's members."""

    PENDING: Final = PipelinePhase.PENDING
    RUNNING: Final = PipelinePhase.RUNNING
    SUCCEEDED: Final = PipelinePhase.SUCCEEDED
    DEGRADED: Final = PipelinePhase.DEGRADED
    FAILED: Final = PipelinePhase.FAILED
