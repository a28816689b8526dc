"""``status.history``: the last runs of a Pipeline, newest first, bounded by ``historyLimit``.

Pure list-in, list-out functions, idempotent so that a reconcile that runs twice (or
after a conflict) writes the same history: opening a run already recorded keeps its
record, closing one twice keeps the first finish time and takes the latest phase (a
Degraded run fixed later ends Succeeded). Compact: optional fields left out when unset
(``api.dump``), messages cut to ``MAX_HISTORY_MESSAGE`` characters.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sluice.api.enums import PipelinePhase
from sluice.api.schedule import (
    HISTORY_LIMIT_DEFAULT,
    HISTORY_LIMIT_MAX,
    MAX_HISTORY_MESSAGE,
    RunRecord,
    RunTrigger,
)

__all__ = ["close_run", "effective_limit", "open_run", "trigger_of"]


def effective_limit(history_limit: int | None) -> int:
    """``spec.historyLimit`` with its default, clamped to ``[0, HISTORY_LIMIT_MAX]``."""
    if history_limit is None:
        return HISTORY_LIMIT_DEFAULT
    return max(0, min(HISTORY_LIMIT_MAX, history_limit))


def trigger_of(*, adopted: bool, scheduled: bool, rerun: bool) -> RunTrigger:
    """What started a run: adopted from Jobs, a tick, the rerun annotation, or the creation."""
    if adopted:
        return RunTrigger.RECOVERED
    if scheduled:
        return RunTrigger.SCHEDULE
    return RunTrigger.RERUN if rerun else RunTrigger.CREATED


def _bounded(records: Sequence[RunRecord], limit: int) -> list[RunRecord]:
    newest_first = sorted(records, key=lambda r: r.run, reverse=True)
    return newest_first[:limit]


def open_run(
    history: Sequence[RunRecord] | None,
    *,
    run: int,
    trigger: RunTrigger,
    started_at: datetime,
    limit: int | None = None,
) -> list[RunRecord]:
    """The history with run ``run`` started (kept as is when it is already recorded)."""
    records = list(history or ())
    if not any(r.run == run for r in records):
        records.append(RunRecord(run=run, trigger=trigger, started_at=started_at))
    return _bounded(records, effective_limit(limit))


def close_run(
    history: Sequence[RunRecord] | None,
    *,
    run: int,
    phase: PipelinePhase,
    finished_at: datetime,
    message: str | None = None,
    limit: int | None = None,
) -> list[RunRecord]:
    """The history with run ``run`` finished in ``phase``; a run not recorded is unchanged."""
    text = message[:MAX_HISTORY_MESSAGE] if message else None
    records = [
        r.model_copy(
            update={
                "phase": phase,
                "finished_at": r.finished_at or finished_at,
                "message": text,
            }
        )
        if r.run == run
        else r
        for r in history or ()
    ]
    return _bounded(records, effective_limit(limit))
