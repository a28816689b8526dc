"""Kubernetes times: one formatter, one parser, one pydantic type."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, PlainSerializer

__all__ = ["Timestamp", "parse_rfc3339", "rfc3339"]


def _utc_seconds(value: datetime) -> datetime:
    # Kubernetes timestamps have second precision; truncating on the way in keeps a parsed
    # status equal to the one we wrote, so reconciles stay idempotent. Naive means UTC.
    if value.tzinfo is UTC and not value.microsecond:
        return value  # already so: the common case, on every status parse and dump
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)


@functools.lru_cache(maxsize=4096)
def rfc3339(value: datetime) -> str:
    """A time as Kubernetes writes it: "2026-11-26T14:51:56Z" (UTC, whole seconds).

    Cached, like :func:`parse_rfc3339`: the statuses and Jobs of many pipelines hold the
    same seconds, and they then share one string (one datetime) instead of a copy each."""
    # isoformat() of a whole-second UTC time is "YYYY-MM-DDTHH:MM:SS+00:00";
    # twice as fast as strftime, and this runs for every timestamp of every status.
    return _utc_seconds(value).isoformat()[:19] + "Z"


@functools.lru_cache(maxsize=4096)
def parse_rfc3339(value: str) -> datetime:
    """A Kubernetes time ("2026-11-26T14:51:56Z", or with an offset) as an aware datetime."""
    return datetime.fromisoformat(value)  # reads the "Z" suffix since Python 3.11


#: A point in time as Kubernetes writes it: UTC, whole seconds, "2026-11-26T14:51:56Z".
Timestamp = Annotated[
    datetime,
    AfterValidator(_utc_seconds),
    PlainSerializer(rfc3339, return_type=str, when_used="json"),
]
