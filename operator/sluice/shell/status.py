"""The one writer of Pipeline statuses and Events.

Workers never wait for it: they hand it the status they decided
(:meth:`StatusWriter.update`) and the Events that explain it
(:meth:`StatusWriter.post`), and go on. It writes beside them:

* **coalescing**: a pipeline's status is written at most once per `interval`
  seconds; what changes meanwhile replaces the pending status, so one write
  carries the latest state;
* **urgent writes**: a significant change (an Event, a phase change, a failure
  message) is written at once, whatever the interval;
* **Events before their status**: per pipeline, Events are posted in order,
  and a status write waits for the Events handed in before it, so whoever
  sees the new status finds the Events that explain it;
* **retry after failure**: a failed write is retried after a backoff, as urgent
  as it was; a 404 (the Pipeline is gone) drops it;
* **one lane**: at most `writers` status writes and Events are in flight at
  once, all pipelines together. They queue there when the API server is busy,
  and coalesce while they queue: Job creations, on which the hand-off latency
  depends, go first. A Pipeline status write costs the API server about 5 ms
  of CPU, a Job create 1-2 ms: with 4 writers instead of 8, 200 chains at once
  wrote half as many statuses, the final status came as soon, and the
  hand-offs got the CPU (bench/README.md).
* **only while leading**: `may_write` is asked at the moment of writing; a
  replica that does not lead drops what it has (the leader decides from the
  Jobs).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from sluice.shell.backoff import BACKOFF, Backoff
from sluice.shell.jobs import PipelineKey
from sluice.shell.kube import ApiError

__all__ = ["STATUS_WRITERS", "StatusWriter"]

log = logging.getLogger(__name__)

STATUS_WRITERS = 4
"""Default width of the lane (`sluice run --status-writers`)."""

Body = Callable[[], Mapping[str, Any]]
"""The Pipeline as the server last returned it (for merge patches and Events)."""


class StatusApi(Protocol):
    async def patch_status(
        self, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]: ...

    async def post_event(
        self, pipeline: dict[str, Any], type_: str, reason: str, message: str
    ) -> None: ...


@dataclass
class _Entry:
    body: Body
    written: Callable[[dict[str, Any]], None]
    pending: dict[str, Any] | None = None
    urgent: bool = False
    last_write: float = -1e9
    failures: int = 0
    retry_at: float = 0.0
    kick: asyncio.Event = field(default_factory=asyncio.Event)
    flush: asyncio.Task[None] | None = None
    events: asyncio.Task[None] | None = None
    """The last batch of Events handed in (it waits for the batches before it)."""
    explained_by: asyncio.Task[None] | None = None
    """The batch of Events handed in before the pending status: posted before it."""


class StatusWriter:
    def __init__(
        self,
        kube: StatusApi,
        interval: float = 1.0,
        writers: int = STATUS_WRITERS,
        may_write: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.monotonic,
        backoff: Backoff = BACKOFF,
    ) -> None:
        self.kube = kube
        self.interval = interval
        self.lane = asyncio.Semaphore(writers)
        self.may_write = may_write
        self.clock = clock
        self.backoff = backoff
        self._entries: dict[PipelineKey, _Entry] = {}
        self.closing = False

    # ------------------------------------------------------------------ the workers' side
    def track(
        self, key: PipelineKey, body: Body, written: Callable[[dict[str, Any]], None]
    ) -> None:
        """Start writing for a pipeline: `written` gets each Pipeline a write returned."""
        self._entries[key] = _Entry(body, written)

    def forget(self, key: PipelineKey) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            for task in (entry.flush, entry.events):
                if task is not None:
                    task.cancel()

    def pending(self, key: PipelineKey) -> dict[str, Any] | None:
        """The status decided but not written yet, if any."""
        entry = self._entries.get(key)
        return entry.pending if entry is not None else None

    def update(self, key: PipelineKey, status: dict[str, Any], urgent: bool = False) -> None:
        """The pipeline's whole new status: written within `interval`, at once if `urgent`."""
        entry = self._entries[key]
        entry.pending = status
        entry.explained_by = entry.events
        entry.urgent |= urgent
        if urgent:
            entry.kick.set()
        self._start(key, entry)

    def post(self, key: PipelineKey, events: Iterable[tuple[str, str, str]]) -> None:
        """Post Events (type, reason, message) in order, after those posted before."""
        entry = self._entries[key]
        batch = list(events)
        if not batch:
            return
        previous = entry.events

        async def post() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            for type_, reason, message in batch:
                await self._event(key, entry, type_, reason, message)

        task = asyncio.create_task(post(), name=f"events {key}", context=contextvars.Context())
        entry.events = task

        def done(_: asyncio.Task[None]) -> None:
            if entry.events is task:
                entry.events = None

        task.add_done_callback(done)

    async def close(self, timeout: float = 5.0) -> None:
        """Best effort: write what is pending (a restart would rebuild it from the Jobs)."""
        self.closing = True
        for key, entry in self._entries.items():
            entry.urgent = True
            entry.kick.set()
            self._start(key, entry)
        tasks = [t for e in self._entries.values() for t in (e.flush, e.events) if t is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout)
            for task in late:
                task.cancel()

    # ------------------------------------------------------------------ writing
    def _start(self, key: PipelineKey, entry: _Entry) -> None:
        if entry.flush is None and entry.pending is not None:
            entry.flush = asyncio.create_task(
                self._flush(key, entry), name=f"status {key}", context=contextvars.Context()
            )

    def _due(self, entry: _Entry) -> float:
        due = self.clock() if entry.urgent else entry.last_write + self.interval
        return max(due, entry.retry_at)

    async def _wait(self, entry: _Entry, timeout: float) -> None:
        """Until `timeout` seconds passed or an urgent change came (tests fake the clock here)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(entry.kick.wait(), timeout)

    async def _flush(self, key: PipelineKey, entry: _Entry) -> None:
        try:
            while entry.pending is not None and self._entries.get(key) is entry:
                delay = self._due(entry) - self.clock()
                if delay > 0:
                    entry.kick.clear()
                    await self._wait(entry, delay)
                    continue
                before = entry.explained_by
                if before is not None and not before.done():
                    # Events first: whoever sees the new status finds the Events that explain it.
                    await asyncio.wait([before])
                    continue  # the status may have changed meanwhile, with Events of its own
                async with self.lane:
                    await self._write(key, entry)
                if self.closing and entry.failures:
                    break
        finally:
            entry.flush = None

    async def _write(self, key: PipelineKey, entry: _Entry) -> None:
        pending = entry.pending  # the latest: changes made while queueing are in it
        if pending is None:
            return
        if not self.may_write():
            entry.pending = None  # not leading: whoever leads decides from the Jobs
            entry.urgent = False
            return
        ns, name = key
        patch: dict[str, Any] = dict.fromkeys(entry.body().get("status") or {})
        patch.update(pending)
        urgent, entry.urgent = entry.urgent, False
        entry.last_write = self.clock()
        try:
            updated = await self.kube.patch_status(ns, name, patch)
        except ApiError as e:
            if e.status == 404:
                entry.pending = None  # the pipeline is gone; its DELETED event stops us
                return
            self._failed(key, entry, e.message, urgent)
            return
        except (aiohttp.ClientError, TimeoutError) as e:
            self._failed(key, entry, repr(e), urgent)
            return
        entry.failures = 0
        entry.retry_at = 0.0
        if entry.pending is pending:
            entry.pending = None
        entry.written(updated)

    def _failed(self, key: PipelineKey, entry: _Entry, error: str, urgent: bool) -> None:
        delay = self.backoff.delay(entry.failures)
        entry.failures += 1
        entry.urgent |= urgent
        entry.retry_at = self.clock() + delay
        log.warning("writing the status of %s/%s failed (%s); again in %ss", *key, error, delay)

    async def _event(
        self, key: PipelineKey, entry: _Entry, type_: str, reason: str, message: str
    ) -> None:
        try:
            async with self.lane:  # off the hand-off path, like status writes
                if not self.may_write():
                    return
                await self.kube.post_event(dict(entry.body()), type_, reason, message)
        except ApiError as e:
            log.warning("posting event %s on %s/%s failed: %s", reason, *key, e.message)
        except (aiohttp.ClientError, TimeoutError) as e:
            log.warning("posting event %s on %s/%s failed: %r", reason, *key, e)
