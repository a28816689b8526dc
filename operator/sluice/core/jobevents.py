"""What a stuck-step diagnosis reads of a Job's Events: :class:`JobEvent`.

The Job controller says why a Job has no pod only in an Event (``FailedCreate``: a
ResourceQuota or a LimitRange that refuses the pod); ``core.stuck`` reads these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sluice.api import parse_rfc3339

__all__ = ["JobEvent", "observe_event"]


@dataclass(frozen=True)
class JobEvent:
    """What a stuck-step diagnosis reads of one Event about a Job."""

    type: str
    reason: str
    message: str
    last_seen: datetime | None


def observe_event(body: Mapping[str, Any]) -> JobEvent:
    """Read a core/v1 Event dict into a JobEvent."""
    when = body.get("lastTimestamp") or body.get("eventTime") or body.get("firstTimestamp")
    if not when:
        when = (body.get("metadata") or {}).get("creationTimestamp")
    return JobEvent(
        type=str(body.get("type") or "Normal"),
        reason=str(body.get("reason") or ""),
        message=str(body.get("message") or ""),
        last_seen=parse_rfc3339(str(when)) if when else None,
    )
