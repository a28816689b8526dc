"""When a scheduled pipeline runs next, and what a due tick does: pure, with the clock passed in.

The cron library
    ``cronsim`` (maintained by the author of healthchecks.io, pure Python, no dependencies)
    rather than ``croniter``: both agree on 5-field syntax and on the spring-forward day (a
    time that does not exist, 02:30 in Europe/Berlin on the last Sunday of March, runs once,
    at the next valid time, 03:00), but on the fall-back day croniter runs a time that occurs
    twice (02:30 in Europe/Berlin, 01:30 in America/New_York) twice, cronsim once (at its
    first occurrence), which is what users of a "daily at 02:30" schedule expect
    (tests/unit/test_schedule.py checks both days in both zones). cronsim has no macros:
    they are a fixed table (``CRON_MACROS``, Vixie cron's), resolved here; it accepts a sixth
    (seconds) field, which we refuse, so a schedule means the same as in a Kubernetes
    CronJob. ``@every <duration>`` is ours: Go's duration syntax (``10s``, ``1m30s``), at
    least 10 s and whole seconds, ticking at ``anchor + k * duration`` (the anchor is the
    pipeline's creation time: stable across restarts, and spread across pipelines).

The decision (:func:`decide`)
    Due ticks are those in ``(lastScheduleTime, now]``. None: wait for the next one. Several
    (the operator was down, the schedule was suspended): only the latest is considered, the
    others are reported as missed (at most one catch-up run). The latest one missed by more
    than ``startingDeadlineSeconds``: not run either, reported as missed. A tick acted on
    runs, is skipped (``Forbid`` while a run is running) or replaces the running run
    (``Replace``), and becomes ``lastScheduleTime``.

No thundering herd
    A tick seen within :data:`PROMPT_SECONDS` of its time is acted on at once: 1,000
    pipelines on ``@daily`` share that tick by design, as they would in any cron. A tick
    seen later is a *catch-up* (the operator was down); it is not run at once but at a slot
    ``now + jitter``, the jitter a deterministic fraction (from the pipeline's uid and the
    tick) of :data:`CATCH_UP_SPREAD_SECONDS`, bounded by half the time left before the
    deadline and half the time to the next tick. The slot is written to
    ``status.schedule.nextScheduleTime``; when the timer fires at the slot, the tick runs.
    A restart with 1,000 overdue pipelines thus starts about 8 runs a second, not 1,000 at
    once, with no shared state between pipelines.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from sluice.api.schedule import CRON_MACROS, CRON_MESSAGE, MIN_EVERY_SECONDS, ConcurrencyPolicy

__all__ = [
    "CATCH_UP_SPREAD_SECONDS",
    "MAX_COUNTED",
    "PROMPT_SECONDS",
    "Action",
    "Cron",
    "Decision",
    "ScheduleError",
    "decide",
    "lag_seconds",
    "parse_cron",
    "parse_duration",
]

PROMPT_SECONDS: Final = 5.0
"""A tick seen at most this late is on time; later it is a catch-up (jittered)."""
CATCH_UP_SPREAD_SECONDS: Final = 120.0
"""Catch-up runs after a restart spread over this window."""
MAX_COUNTED: Final = 100
"""Missed ticks are counted up to this many: counting a cron costs ~12 µs a tick."""
_MAX_EVERY_SECONDS: Final = 366 * 24 * 3600

_DURATION_PART: Final = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS: Final = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


class ScheduleError(ValueError):
    """A schedule that cannot be read; the message names the field and the problem."""


def parse_duration(text: str) -> float:
    """A Go duration ("10s", "1m30s", "1.5h") in seconds; raises :class:`ScheduleError`."""
    pos, total = 0, 0.0
    text = text.strip()
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if m is None:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise ScheduleError(f"{text!r} is not a duration (e.g. 10s, 1m30s, 2h)")
    return total


@dataclass(frozen=True)
class Cron:
    """A parsed schedule: a 5-field expression in a zone, or ``@every`` seconds."""

    expression: str | None  # the 5 fields, macros resolved; None for @every
    zone: ZoneInfo
    every: float | None = None

    def next_after(self, t: datetime, anchor: datetime) -> datetime:
        """The first tick strictly after ``t`` (aware, UTC)."""
        if self.every is not None:
            k = int((t - anchor).total_seconds() // self.every) + 1
            return _utc(anchor) + timedelta(seconds=max(k, 1) * self.every)
        assert self.expression is not None
        return _utc(next(iter(CronSim(self.expression, t.astimezone(self.zone)))))

    def latest_at_or_before(self, t: datetime, anchor: datetime) -> datetime | None:
        """The last tick at or before ``t``, None if there is none (after ``anchor``)."""
        if self.every is not None:
            k = int((t - anchor).total_seconds() // self.every)
            return _utc(anchor) + timedelta(seconds=k * self.every) if k >= 1 else None
        assert self.expression is not None
        after = t.astimezone(self.zone).replace(microsecond=0) + timedelta(seconds=1)
        return _utc(next(iter(CronSim(self.expression, after, reverse=True))))

    def count_between(self, start: datetime, end: datetime, anchor: datetime) -> int:
        """Ticks in ``(start, end]``, counted up to :data:`MAX_COUNTED`."""
        if self.every is not None:
            first = self.next_after(start, anchor)
            if first > end:
                return 0
            return min(MAX_COUNTED, int((end - first).total_seconds() // self.every) + 1)
        assert self.expression is not None
        n = 0
        for t in CronSim(self.expression, start.astimezone(self.zone)):
            if n >= MAX_COUNTED or t > end:
                break
            n += 1
        return n


def _utc(t: datetime) -> datetime:
    return t.astimezone(UTC)


def parse_cron(cron: str, time_zone: str = "UTC") -> Cron:
    """Read ``spec.schedule``'s ``cron`` and ``timeZone``; raises :class:`ScheduleError`."""
    try:
        zone = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"schedule.timeZone: unknown time zone {time_zone!r} "
            "(an IANA name such as UTC, Europe/Berlin or America/New_York)"
        ) from None
    text = " ".join(cron.split())
    if text.startswith("@every"):
        return Cron(None, zone, _every_seconds(text[len("@every") :]))
    expression = CRON_MACROS.get(text, text)  # lower case only, as the CRD's rule says
    if expression.startswith("@"):
        known = ", ".join(sorted(CRON_MACROS))
        raise ScheduleError(f"schedule.cron: unknown macro {text!r} (known: {known}, @every)")
    fields = expression.split(" ")
    if len(fields) != 5:
        raise ScheduleError(f"schedule.cron: {text!r} has {len(fields)} fields: {CRON_MESSAGE}")
    try:
        next(iter(CronSim(expression, datetime(2000, 1, 1, tzinfo=zone))))
    except CronSimError as err:  # "Bad minute": the field's name, in cronsim's words
        raise ScheduleError(f"schedule.cron: {text!r}: {str(err).lower()}") from None
    except StopIteration:
        raise ScheduleError(f"schedule.cron: {text!r} never matches a date") from None
    return Cron(expression, zone)


def _every_seconds(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ScheduleError as err:
        raise ScheduleError(f"schedule.cron: @every: {err}") from None
    if seconds < MIN_EVERY_SECONDS:
        raise ScheduleError(
            f"schedule.cron: @every {text.strip()} is below the minimum of {MIN_EVERY_SECONDS}s"
        )
    if seconds != int(seconds):  # status times have whole seconds, and so must ticks
        raise ScheduleError(f"schedule.cron: @every {text.strip()} is not whole seconds")
    if seconds > _MAX_EVERY_SECONDS:
        raise ScheduleError(f"schedule.cron: @every {text.strip()} is over a year")
    return seconds


class Action(StrEnum):
    """What a scheduled pipeline does now."""

    RUN = "Run"
    """Start a new run for ``tick`` (trigger Schedule), as ``sluice.dev/rerun`` does."""
    SKIP = "Skip"
    """Forbid: a run is running; Event ``ScheduleSkipped`` with ``reason``."""
    REPLACE = "Replace"
    """Stop the running run's Jobs, then start a new run for ``tick``."""
    MISS = "Miss"
    """The latest due tick is past its deadline: nothing runs; Event ``MissedSchedule``."""
    WAIT = "Wait"
    """Nothing due (or a catch-up waits for its slot): wake at ``wake_at``."""


@dataclass(frozen=True)
class Decision:
    """The outcome of :func:`decide`; the shell writes ``last``/``planned`` to status.schedule."""

    action: Action
    wake_at: datetime | None
    """When to look again (the worker's wake-at timer); None: never (suspended)."""
    last: datetime | None
    """``status.schedule.lastScheduleTime`` after this decision."""
    planned: datetime | None
    """``status.schedule.nextScheduleTime`` after this decision (a tick or a catch-up slot)."""
    tick: datetime | None = None
    """The tick acted on (RUN, SKIP, REPLACE, MISS)."""
    missed: int = 0
    """Due ticks not run (older than the one acted on, or all of them past the deadline);
    :data:`MAX_COUNTED` means at least that many. Non-zero: Event ``MissedSchedule``."""
    reason: str = ""
    """One sentence for the Event of a SKIP or MISS (or a catch-up's wait)."""


def decide(
    cron: Cron,
    *,
    now: datetime,
    anchor: datetime,
    last: datetime | None,
    planned: datetime | None,
    running: bool,
    suspended: bool = False,
    policy: ConcurrencyPolicy = ConcurrencyPolicy.FORBID,
    deadline_seconds: int | None = None,
    uid: str = "",
) -> Decision:
    """What a scheduled pipeline does at ``now``.

    ``anchor`` is the pipeline's creation time; ``last`` and ``planned`` are
    ``status.schedule.lastScheduleTime`` and ``nextScheduleTime``; ``running`` says whether
    its current run is still running; ``uid`` seeds the catch-up jitter.
    """
    if suspended:
        return Decision(Action.WAIT, None, last, None, reason="the pipeline is suspended")
    ref = last if last is not None else (planned - timedelta(microseconds=1) if planned else None)
    if ref is None:  # first sight: the first tick from now on, no catch-up of the past
        nxt = cron.next_after(now, anchor)
        return Decision(Action.WAIT, nxt, None, nxt)
    latest = cron.latest_at_or_before(now, anchor)
    if latest is None or latest <= ref:
        nxt = cron.next_after(max(ref, now), anchor)
        return Decision(Action.WAIT, nxt, last, nxt)
    due = cron.count_between(ref, now, anchor)
    nxt = cron.next_after(now, anchor)
    late = (now - latest).total_seconds()
    if deadline_seconds is not None and late > deadline_seconds:
        reason = (
            f"{_ticks(due)} missed, the latest at {_clock(latest)} by {int(late)}s, more than "
            f"startingDeadlineSeconds ({deadline_seconds}); none is run"
        )
        return Decision(Action.MISS, nxt, latest, nxt, latest, due, reason)
    slot_reached = planned is not None and latest < planned <= now
    if late > PROMPT_SECONDS and not slot_reached:
        slot = _catch_up_slot(now, latest, nxt, deadline_seconds, uid)
        if slot > now:
            return Decision(
                Action.WAIT, slot, last, slot, latest, reason="catch-up run waits for its slot"
            )
    missed = due - 1 if due < MAX_COUNTED else MAX_COUNTED
    reason = f"{_ticks(missed)} missed; only the latest is run" if missed else ""
    if not running:
        return Decision(Action.RUN, nxt, latest, nxt, latest, missed, reason)
    if policy is ConcurrencyPolicy.REPLACE:
        return Decision(Action.REPLACE, nxt, latest, nxt, latest, missed, reason)
    skipped = f"the tick of {_clock(latest)} is skipped: the previous run is still running"
    return Decision(Action.SKIP, nxt, latest, nxt, latest, missed, skipped)


def _catch_up_slot(
    now: datetime, tick: datetime, nxt: datetime, deadline: int | None, uid: str
) -> datetime:
    window = min(CATCH_UP_SPREAD_SECONDS, (nxt - now).total_seconds() / 2)
    if deadline is not None:
        window = min(window, (tick + timedelta(seconds=deadline) - now).total_seconds() / 2)
    if window < 1:
        return now
    digest = hashlib.sha256(f"{uid}/{tick.isoformat()}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return now + timedelta(seconds=int(fraction * window))


def _ticks(n: int) -> str:
    if n >= MAX_COUNTED:
        return f"at least {MAX_COUNTED} ticks"
    return "1 tick" if n == 1 else f"{n} ticks"


def _clock(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def lag_seconds(tick: datetime, started: datetime) -> float:
    """From a tick to its run's start, for the histogram (never negative)."""
    return max(0.0, (started - tick).total_seconds())
