"""sluice.core.validation.schedule: a bad schedule is refused in words naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.core.validation import check_pipeline


def spec(**fields: Any) -> dict[str, Any]:
    return {"tasks": [{"name": "a", "task": {"image": "busybox:1.36"}}], **fields}


@pytest.mark.parametrize(
    "schedule",
    [
        {"cron": "30 2 * * *", "timeZone": "Europe/Berlin"},
        {"cron": "@hourly", "concurrencyPolicy": "Replace", "startingDeadlineSeconds": 60},
        {"cron": "@every 1m30s"},
    ],
)
def test_good_schedules_are_clean(schedule: dict[str, Any]) -> None:
    report = check_pipeline(spec(schedule=schedule, historyLimit=50), tasks={})
    assert report.errors == []


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"schedule": {"cron": "0 0 * * 8"}}, "schedule.cron: '0 0 * * 8': bad day-of-week"),
        ({"schedule": {"cron": "@daily", "timeZone": "CEST"}}, "unknown time zone 'CEST'"),
        ({"schedule": {"cron": "@every 9s"}}, "@every 9s is below the minimum of 10s"),
        ({"historyLimit": 51}, "spec.historyLimit"),
        ({"historyLimit": -1}, "spec.historyLimit"),
        ({"schedule": {"cron": "@daily", "concurrencyPolicy": "Allow"}}, "concurrencyPolicy"),
        ({"cache": {"enabled": True, "maxAgeSeconds": 0}}, "spec.cache.maxAgeSeconds"),
    ],
)
def test_bad_schedules_name_the_field(fields: dict[str, Any], words: str) -> None:
    report = check_pipeline(spec(**fields), tasks={})
    assert words in report.message(), report.message()
    assert report.refusal() is not None
