"""sluice.core.schedule: cron, time zones and DST, the missed-tick policy, on a fake clock."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.api.schedule import CRON_MACROS, CRON_SHAPE, ConcurrencyPolicy
from sluice.core import cel
from sluice.core.schedule import (
    CATCH_UP_SPREAD_SECONDS,
    MAX_COUNTED,
    Action,
    Cron,
    Decision,
    ScheduleError,
    decide,
    lag_seconds,
    parse_cron,
    parse_duration,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def ticks(cron: Cron, start: datetime, end: datetime, anchor: datetime = T0) -> list[datetime]:
    out, t = [], start
    while (t := cron.next_after(t, anchor)) < end:
        out.append(t)
    return out


# --- DST: a daily 02:30 runs once on the spring-forward day and once on the fall-back day ---

DST_DAYS = [
    # zone, spring-forward day, fall-back day (2026), the repeated/skipped local hour
    ("Europe/Berlin", (2026, 3, 29), (2026, 10, 25), "30 2 * * *"),
    ("America/New_York", (2026, 3, 8), (2026, 11, 1), "30 2 * * *"),
    ("America/New_York", (2026, 3, 8), (2026, 11, 1), "30 1 * * *"),  # NY repeats 01:xx
]


@pytest.mark.parametrize(("zone", "spring", "fall", "expr"), DST_DAYS)
def test_a_daily_schedule_runs_once_on_each_dst_change_day(
    zone: str, spring: tuple[int, int, int], fall: tuple[int, int, int], expr: str
) -> None:
    cron = parse_cron(expr, zone)
    for day in (spring, fall):
        local_day = datetime(*day, tzinfo=cron.zone)
        got = [
            t
            for t in ticks(cron, local_day - timedelta(days=2), local_day + timedelta(days=2))
            if t.astimezone(cron.zone).date() == local_day.date()
        ]
        assert len(got) == 1, (zone, day, got)


def test_a_time_skipped_by_spring_forward_runs_at_the_next_valid_time() -> None:
    cron = parse_cron("30 2 * * *", "Europe/Berlin")
    (tick,) = ticks(cron, utc(2026, 3, 28, 12), utc(2026, 3, 29, 12))
    assert tick == utc(2026, 3, 29, 1, 0)  # 03:00 CEST, the first valid time after 02:00


def test_a_repeated_time_on_fall_back_runs_at_its_first_occurrence() -> None:
    cron = parse_cron("30 2 * * *", "Europe/Berlin")
    (tick,) = ticks(cron, utc(2026, 10, 24, 12), utc(2026, 10, 25, 12))
    assert tick == utc(2026, 10, 25, 0, 30)  # 02:30 CEST, not 02:30 CET an hour later


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        ("Europe/Berlin", (2026, 3, 29), 23),
        ("Europe/Berlin", (2026, 10, 25), 25),
        ("America/New_York", (2026, 11, 1), 25),
    ],
)
def test_hourly_ticks_through_every_real_hour(
    zone: str, day: tuple[int, int, int], hours: int
) -> None:
    cron = parse_cron("@hourly", zone)
    start = datetime(*day, tzinfo=cron.zone)
    end = (start + timedelta(days=1, hours=12)).replace(hour=0)  # local midnight after
    got = ticks(cron, start - timedelta(seconds=1), end)
    assert len(got) == hours


def test_the_time_zone_shifts_the_tick() -> None:
    before = T0 - timedelta(seconds=1)
    assert parse_cron("0 9 * * *", "Asia/Tokyo").next_after(before, T0) == utc(2026, 1, 1, 0)
    assert parse_cron("0 9 * * *").next_after(before, T0) == utc(2026, 1, 1, 9)


# --- syntax ---


@pytest.mark.parametrize(("macro", "expression"), sorted(CRON_MACROS.items()))
def test_macros_tick_as_their_expressions(macro: str, expression: str) -> None:
    assert ticks(parse_cron(macro), T0, T0 + timedelta(days=400)) == ticks(
        parse_cron(expression), T0, T0 + timedelta(days=400)
    )


def test_hourly_and_daily() -> None:
    assert parse_cron("@hourly").next_after(utc(2026, 1, 1, 0, 30), T0) == utc(2026, 1, 1, 1)
    assert parse_cron("@daily").next_after(utc(2026, 1, 1, 0, 30), T0) == utc(2026, 1, 2)


@pytest.mark.parametrize(
    ("expr", "first"),
    [
        ("*/15 * * * *", utc(2026, 1, 1, 0, 15)),
        ("0 12 * * MON-FRI", utc(2026, 1, 1, 12)),  # 2026-01-01 is a Thursday
        ("0 0 1,15 * *", utc(2026, 1, 15)),
        ("5 4 * * sun", utc(2026, 1, 4, 4, 5)),
        ("  0   0  *  *  * ", utc(2026, 1, 2)),  # extra spaces are fine
    ],
)
def test_five_field_syntax(expr: str, first: datetime) -> None:
    assert parse_cron(expr).next_after(T0, T0) == first


@pytest.mark.parametrize(
    ("cron", "zone", "words"),
    [
        ("61 * * * *", "UTC", "schedule.cron: '61 * * * *': bad minute"),
        ("0 25 * * *", "UTC", "bad hour"),
        ("0 0 32 * *", "UTC", "bad day-of-month"),
        ("0 0 * 13 *", "UTC", "bad month"),
        ("0 0 * * 8", "UTC", "bad day-of-week"),
        ("* * * *", "UTC", "has 4 fields: cron must be 5 fields"),
        ("0 * * * * *", "UTC", "has 6 fields"),
        ("@fortnightly", "UTC", "unknown macro '@fortnightly'"),
        ("@every 5s", "UTC", "@every 5s is below the minimum of 10s"),
        ("@every 10.5s", "UTC", "not whole seconds"),
        ("@every 10 s", "UTC", "not a duration"),
        ("@every", "UTC", "not a duration"),
        ("@every 10x", "UTC", "not a duration"),
        ("@daily", "Mars/Olympus", "schedule.timeZone: unknown time zone 'Mars/Olympus'"),
        ("@daily", "../etc/passwd", "schedule.timeZone: unknown time zone"),
    ],
)
def test_bad_schedules_are_refused_with_the_field(cron: str, zone: str, words: str) -> None:
    with pytest.raises(ScheduleError, match=r"^schedule\.") as err:
        parse_cron(cron, zone)
    assert words in str(err.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("1m30s", 90), ("1.5h", 5400), ("2h45m", 9900), ("1500ms", 1.5), (".5m", 30)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_every_ticks_from_the_anchor() -> None:
    cron = parse_cron("@every 1m30s")
    anchor = utc(2026, 1, 1, 0, 0, 7)
    assert ticks(cron, anchor, anchor + timedelta(minutes=5), anchor) == [
        anchor + timedelta(seconds=90 * k) for k in (1, 2, 3)
    ]
    assert cron.next_after(anchor - timedelta(hours=1), anchor) == anchor + timedelta(seconds=90)


# --- the decision ---

EVERY_MIN = parse_cron("*/1 * * * *")


def at(minute: int, second: float = 0) -> datetime:
    return T0 + timedelta(minutes=minute, seconds=second)


def test_first_sight_waits_for_the_next_tick_and_catches_up_nothing() -> None:
    d = decide(EVERY_MIN, now=at(10, 20), anchor=T0, last=None, planned=None, running=False)
    assert d == Decision(Action.WAIT, at(11), None, at(11))


def test_a_tick_on_time_runs_and_plans_the_next() -> None:
    d = decide(EVERY_MIN, now=at(11, 0.3), anchor=T0, last=None, planned=at(11), running=False)
    assert (d.action, d.tick, d.last, d.wake_at, d.missed) == (
        Action.RUN,
        at(11),
        at(11),
        at(12),
        0,
    )


def test_before_the_tick_nothing_happens() -> None:
    d = decide(EVERY_MIN, now=at(11, 30), anchor=T0, last=at(11), planned=at(12), running=True)
    assert (d.action, d.wake_at, d.last) == (Action.WAIT, at(12), at(11))


def test_forbid_skips_while_running_with_a_reason() -> None:
    d = decide(EVERY_MIN, now=at(12, 1), anchor=T0, last=at(11), planned=at(12), running=True)
    assert (d.action, d.tick, d.last, d.wake_at) == (Action.SKIP, at(12), at(12), at(13))
    assert "still running" in d.reason


def test_replace_replaces_the_running_run() -> None:
    d = decide(
        EVERY_MIN,
        now=at(12, 1),
        anchor=T0,
        last=at(11),
        planned=at(12),
        running=True,
        policy=ConcurrencyPolicy.REPLACE,
    )
    assert (d.action, d.tick) == (Action.REPLACE, at(12))


def test_suspended_waits_for_nothing() -> None:
    d = decide(
        EVERY_MIN, now=at(12), anchor=T0, last=at(11), planned=at(12), running=False, suspended=True
    )
    assert (d.action, d.wake_at, d.last) == (Action.WAIT, None, at(11))


def test_missed_ticks_beyond_the_deadline_are_not_run() -> None:
    d = decide(
        EVERY_MIN,
        now=at(20, 30),
        anchor=T0,
        last=at(11),
        planned=at(12),
        running=False,
        deadline_seconds=20,
    )
    assert (d.action, d.missed, d.last, d.wake_at) == (Action.MISS, 9, at(20), at(21))
    assert "9 ticks missed" in d.reason and "startingDeadlineSeconds (20)" in d.reason


def test_a_catch_up_waits_for_its_slot_then_runs_the_latest_tick_once() -> None:
    hourly = parse_cron("@hourly")
    last, now = utc(2026, 1, 1, 1), utc(2026, 1, 1, 5, 10)  # down from 01:30 to 05:10
    d = decide(
        hourly, now=now, anchor=T0, last=last, planned=utc(2026, 1, 1, 2), running=False, uid="u"
    )
    assert d.action is Action.WAIT and d.tick == utc(2026, 1, 1, 5)
    assert d.wake_at is not None and now < d.wake_at <= now + timedelta(
        seconds=CATCH_UP_SPREAD_SECONDS
    )
    assert d.planned == d.wake_at and d.last == last
    d2 = decide(
        hourly, now=d.wake_at, anchor=T0, last=last, planned=d.planned, running=False, uid="u"
    )
    assert (d2.action, d2.tick, d2.missed) == (Action.RUN, utc(2026, 1, 1, 5), 3)
    assert "3 ticks missed" in d2.reason
    d3 = decide(hourly, now=d.wake_at, anchor=T0, last=d2.last, planned=d2.planned, running=True)
    assert (d3.action, d3.wake_at) == (Action.WAIT, utc(2026, 1, 1, 6))


def test_the_catch_up_slot_stays_within_the_deadline() -> None:
    hourly = parse_cron("@hourly")
    for uid in map(str, range(200)):
        d = decide(
            hourly,
            now=utc(2026, 1, 1, 5, 0, 50),
            anchor=T0,
            last=utc(2026, 1, 1, 1),
            planned=None,
            running=False,
            deadline_seconds=60,
            uid=uid,
        )
        assert d.action in (Action.WAIT, Action.RUN)
        if d.action is Action.WAIT:
            assert d.wake_at is not None and d.wake_at <= utc(2026, 1, 1, 5, 0, 55)


def test_huge_outages_count_up_to_a_bound() -> None:
    d = decide(
        EVERY_MIN,
        now=at(60 * 24 * 365, 30),
        anchor=T0,
        last=at(0),
        planned=at(1),
        running=False,
        deadline_seconds=10,
    )
    assert (d.action, d.missed) == (Action.MISS, MAX_COUNTED)
    assert f"at least {MAX_COUNTED} ticks" in d.reason


def test_no_thundering_herd_when_1000_overdue_pipelines_restart() -> None:
    hourly, now = parse_cron("@hourly"), utc(2026, 1, 1, 5, 10)
    starts: Counter[int] = Counter()
    for uid in (f"uid-{i}" for i in range(1000)):
        d = decide(
            hourly,
            now=now,
            anchor=T0,
            last=utc(2026, 1, 1, 1),
            planned=None,
            running=False,
            uid=uid,
        )
        start = now if d.action is Action.RUN else d.wake_at
        assert start is not None
        starts[int((start - now).total_seconds())] += 1
    assert max(starts) < CATCH_UP_SPREAD_SECONDS
    assert max(starts.values()) <= 25  # ~8 a second on average, never 1,000 at once


def test_lag() -> None:
    assert lag_seconds(at(1), at(1, 2.5)) == 2.5
    assert lag_seconds(at(1), at(0)) == 0.0


# --- the policy over time: a fake clock that follows the timer ---


def simulate(
    cron: Cron,
    end: datetime,
    *,
    outage: tuple[datetime, datetime] | None = None,
    deadline: int | None = None,
    run_seconds: float = 0,
    policy: ConcurrencyPolicy = ConcurrencyPolicy.FORBID,
) -> list[tuple[Action, datetime | None, datetime]]:
    """Wake when the decision says (or when the operator comes back); runs last run_seconds."""
    now, last, planned, busy_until = T0, None, None, T0
    log: list[tuple[Action, datetime | None, datetime]] = []
    while now < end:
        d = decide(
            cron,
            now=now,
            anchor=T0,
            last=last,
            planned=planned,
            running=now < busy_until,
            policy=policy,
            deadline_seconds=deadline,
            uid="p",
        )
        if d.action is not Action.WAIT:
            log.append((d.action, d.tick, now))
        if d.action in (Action.RUN, Action.REPLACE):
            busy_until = now + timedelta(seconds=run_seconds)
        last, planned = d.last, d.planned
        assert d.wake_at is not None and d.wake_at > now
        now = d.wake_at
        if outage and outage[0] <= now < outage[1]:
            now = outage[1]
    return log


def test_every_10s_runs_each_tick_once() -> None:
    log = simulate(parse_cron("@every 10s"), T0 + timedelta(minutes=2))
    assert [a for a, _, _ in log] == [Action.RUN] * 11  # t=10..110 s (first sight at 0)
    assert [tick for _, tick, _ in log] == [T0 + timedelta(seconds=10 * k) for k in range(1, 12)]


def test_forbid_never_overlaps_runs() -> None:
    log = simulate(parse_cron("@every 10s"), T0 + timedelta(minutes=2), run_seconds=25)
    runs = [now for a, _, now in log if a is Action.RUN]
    assert all(b - a >= timedelta(seconds=25) for a, b in itertools.pairwise(runs))
    assert Action.SKIP in {a for a, _, _ in log}


def test_an_outage_makes_exactly_one_catch_up_within_the_deadline() -> None:
    log = simulate(EVERY_MIN, at(30), outage=(at(5, 30), at(10, 20)), deadline=300)
    during = [(a, tick) for a, tick, now in log if at(10, 20) <= now < at(11)]
    assert during == [(Action.RUN, at(10))]  # 06..09 missed, 10 caught up once
    assert len([a for a, _, _ in log if a is Action.RUN]) == 5 + 1 + 19


def test_an_outage_beyond_the_deadline_runs_nothing_late() -> None:
    log = simulate(EVERY_MIN, at(30), outage=(at(5, 30), at(10, 40)), deadline=30)
    during = [(a, tick) for a, tick, now in log if at(10, 40) <= now < at(11)]
    assert during == [(Action.MISS, at(10))]


@settings(max_examples=60, deadline=None)
@given(
    every=st.integers(min_value=10, max_value=600),
    down_from=st.integers(min_value=0, max_value=3600),
    down_for=st.integers(min_value=0, max_value=7200),
    deadline=st.one_of(st.none(), st.integers(min_value=1, max_value=3600)),
    run_seconds=st.integers(min_value=0, max_value=900),
)
def test_no_tick_runs_twice_and_catch_ups_are_single(
    every: int, down_from: int, down_for: int, deadline: int | None, run_seconds: int
) -> None:
    outage = (T0 + timedelta(seconds=down_from), T0 + timedelta(seconds=down_from + down_for))
    log = simulate(
        parse_cron(f"@every {every}s"),
        T0 + timedelta(hours=3),
        outage=outage,
        deadline=deadline,
        run_seconds=run_seconds,
    )
    acted = [tick for _, tick, _ in log]
    assert len(acted) == len(set(acted))  # every tick is acted on at most once
    assert acted == sorted(acted)  # lastScheduleTime only moves forward
    missed = [a for a, tick, _ in log if tick is not None and outage[0] < tick <= outage[1]]
    assert missed.count(Action.RUN) <= 1  # at most one catch-up for the whole outage


@pytest.mark.parametrize(
    "cron",
    [
        "@daily",
        "@every 10s",
        "@every 1h30m",
        " 0 0 * * * ",
        "*/5 1-3 1,15 JAN-MAR MON#2",
        "0 0 L * *",
    ],
)
def test_the_crd_shape_admits_what_the_operator_reads(cron: str) -> None:
    parse_cron(cron)
    assert re.match(CRON_SHAPE, cron)


@pytest.mark.parametrize(
    "cron", ["0 * * * * *", "* * * *", "@Daily", "@every", "@every 10", "0 0 * * * # x"]
)
def test_the_crd_shape_refuses_what_the_operator_refuses(cron: str) -> None:
    assert not re.match(CRON_SHAPE, cron)
    with pytest.raises(ScheduleError):
        parse_cron(cron)


@pytest.mark.parametrize(
    ("cron", "ok"),
    [("@daily", True), ("@every 1m30s", True), (" 0 0 * * * ", True), ("0 * * * * *", False)],
)
def test_the_crd_rule_compiles_and_agrees_in_re2(cron: str, ok: bool) -> None:
    """The API server runs the rule in CEL with RE2; so does the CEL binding here."""
    from sluice.api import PipelineSpec

    schema = PipelineSpec.model_json_schema(by_alias=True)["$defs"]["Schedule"]
    (rule,) = schema["properties"]["cron"]["x-kubernetes-validations"]
    program = cel.new_env({"self": cel.STRING}).compile(rule["rule"])
    assert program.eval(data={"self": cron}).value() is ok
