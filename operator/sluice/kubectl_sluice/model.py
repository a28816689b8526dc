"""The model ``kubectl sluice`` draws: :class:`PipelineView` and :class:`Step`, read
leniently from a Pipeline object by :func:`view`, and :func:`duration`.

Re-exported by :mod:`sluice.kubectl_sluice.render`, which uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sluice.api import RERUN_ANNOTATION, RETRY_ANNOTATION, parse_rfc3339

# ----------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Step:
    name: str
    depends_on: tuple[str, ...] = ()
    phase: str = "Pending"
    attempts: int = 0
    job: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    next_retry_at: datetime | None = None
    reason: str | None = None
    message: str | None = None
    final: bool = False
    """A ``finally`` step (runs once the main steps settled)."""


@dataclass(frozen=True)
class PipelineView:
    name: str
    namespace: str = ""
    phase: str | None = None
    run: int = 0
    progress: str | None = None
    message: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    generation: int | None = None
    observed_generation: int | None = None
    suspend: bool = False
    pending_request: str | None = None
    """A retry or rerun asked for (annotation) that the operator has not acted on yet."""
    steps: tuple[Step, ...] = field(default_factory=tuple)
    next_run_at: datetime | None = None

    @property
    def deps(self) -> dict[str, list[str]]:
        return {s.name: list(s.depends_on) for s in self.steps}

    @property
    def seen(self) -> bool:
        """Whether the operator has written a status for it at all."""
        return self.phase is not None

    @property
    def settled(self) -> bool:
        """The run has finished, as the operator sees the current spec and annotations."""
        return (
            self.finished_at is not None
            and self.pending_request is None
            and (
                self.generation is None
                or self.observed_generation is None
                or self.observed_generation >= self.generation
            )
        )

    @property
    def main_steps(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if not s.final)

    @property
    def finally_steps(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.final)

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_rfc3339(value)
    except ValueError:
        return None


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _mapping(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, Mapping) else {}


def _optional_int(value: Any) -> int | None:
    return value if isinstance(value, int) else None


def _step(t: Mapping[str, Any], st: Mapping[str, Any], final: bool = False) -> Step:
    """A spec task ``t`` with its recorded status ``st``."""
    return Step(
        name=t["name"],
        depends_on=tuple(d for d in t.get("dependsOn") or [] if isinstance(d, str)),
        phase=_str(st.get("phase")) or "Pending",
        attempts=_int(st.get("attempts")),
        job=_str(st.get("job")),
        started_at=_time(st.get("startedAt")),
        finished_at=_time(st.get("finishedAt")),
        next_retry_at=_time(st.get("nextRetryAt")),
        reason=_str(st.get("reason")),
        message=_str(st.get("message")),
        final=final,
    )


def _steps(spec: Mapping[str, Any], status: Mapping[str, Any]) -> list[Step]:
    recorded: dict[str, Mapping[str, Any]] = {}
    for t in status.get("tasks") or []:
        if isinstance(t, Mapping) and isinstance(t.get("name"), str):
            recorded[t["name"]] = t
    return [
        _step(t, recorded.get(t["name"], {}), final=key == "finally")
        for key in ("tasks", "finally")
        for t in _list(spec.get(key))
        if isinstance(t, Mapping) and isinstance(t.get("name"), str)
    ]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _pending(meta: Mapping[str, Any], status: Mapping[str, Any]) -> str | None:
    """A rerun or retry asked for (by annotation) and not yet handled."""
    annotations = _mapping(meta, "annotations")
    rerun, retry = annotations.get(RERUN_ANNOTATION), annotations.get(RETRY_ANNOTATION)
    if status.get("phase") is not None:
        if rerun is not None and rerun != status.get("handledRerun"):
            return "rerun"
        if retry is not None and retry != status.get("handledRetry"):
            return "retry"
    return None


def view(obj: Mapping[str, Any]) -> PipelineView:
    """A Pipeline object (as the API server returns it) as a :class:`PipelineView`.

    Total: missing or malformed fields read as absent, never raise.
    """
    meta = _mapping(obj, "metadata")
    spec = _mapping(obj, "spec")
    status = _mapping(obj, "status")
    return PipelineView(
        name=str(meta.get("name") or ""),
        namespace=str(meta.get("namespace") or ""),
        phase=_str(status.get("phase")),
        run=_int(status.get("run")),
        progress=_str(status.get("progress")),
        message=_str(status.get("message")),
        created_at=_time(meta.get("creationTimestamp")),
        started_at=_time(status.get("startedAt")),
        finished_at=_time(status.get("finishedAt")),
        generation=_optional_int(meta.get("generation")),
        observed_generation=_optional_int(status.get("observedGeneration")),
        suspend=spec.get("suspend") is True,
        pending_request=_pending(meta, status),
        steps=tuple(_steps(spec, status)),
        next_run_at=_time((status.get("schedule") or {}).get("nextScheduleTime")),
    )


# ----------------------------------------------------------------------------- durations


def duration(seconds: float | None) -> str:
    """``45s``, ``3m12s``, ``2h5m``, ``3d4h``: as kubectl shows ages (two units at most)."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s}s" if s else f"{m}m"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m}m" if m else f"{h}h"
    d, h = divmod(h, 24)
    return f"{d}d{h}h" if h else f"{d}d"


def _span(start: datetime | None, end: datetime | None, now: datetime) -> float | None:
    if start is None:
        return None
    return ((end or now) - start).total_seconds()
