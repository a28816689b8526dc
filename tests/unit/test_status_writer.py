"""The one writer of statuses and Events (sluice.shell.status), with a fake API
and a fake clock: coalescing, urgent writes, 404, retry after a failure, Events
before the status they explain, nothing written without the Lease."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sluice.shell.kube import ApiError
from sluice.shell.status import StatusWriter

KEY = ("ns", "p")


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class FakeApi:
    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []
        self.failures: list[Exception] = []
        self.rv = 1

    async def patch_status(
        self, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        await asyncio.sleep(0)
        self.log.append(("status", dict(patch)))
        if self.failures:
            raise self.failures.pop(0)
        self.rv += 1
        status = {k: v for k, v in patch.items() if v is not None}
        return {"metadata": {"resourceVersion": str(self.rv)}, "status": status}

    async def post_event(
        self, pipeline: dict[str, Any], type_: str, reason: str, message: str
    ) -> None:
        for _ in range(5):  # slower than a status write: the order must not depend on speed
            await asyncio.sleep(0)
        self.log.append(("event", reason))

    def statuses(self) -> list[dict[str, Any]]:
        return [entry for kind, entry in self.log if kind == "status"]


class FakeClockWriter(StatusWriter):
    """Waits end when the test advances the clock (or an urgent change comes)."""

    def __init__(self, api: FakeApi, clock: Clock, **kwargs: Any) -> None:
        super().__init__(api, clock=clock, **kwargs)
        self.fake_clock = clock
        self.tick = asyncio.Event()

    async def _wait(self, entry: Any, timeout: float) -> None:
        waits = [asyncio.ensure_future(e.wait()) for e in (self.tick, entry.kick)]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()

    async def advance(self, seconds: float) -> None:
        self.fake_clock.t += seconds
        tick, self.tick = self.tick, asyncio.Event()
        tick.set()
        await settle()


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


def scenario(
    test: Callable[[FakeApi, FakeClockWriter, dict[str, Any]], Awaitable[None]],
    leading: bool = True,
) -> None:
    async def run() -> None:
        api, clock = FakeApi(), Clock()
        writer = FakeClockWriter(api, clock, interval=1.0, may_write=lambda: leading)
        pipeline: dict[str, Any] = {"metadata": {"name": "p", "resourceVersion": "1"}, "status": {}}

        def written(updated: dict[str, Any]) -> None:
            pipeline.clear()
            pipeline.update(updated)

        writer.track(KEY, lambda: pipeline, written)
        await test(api, writer, pipeline)
        await writer.close(timeout=1)

    asyncio.run(run())


def test_progress_is_coalesced_into_one_write_per_interval() -> None:
    async def test(api: FakeApi, w: FakeClockWriter, pipeline: dict[str, Any]) -> None:
        w.update(KEY, {"progress": "0/3"})
        await settle()
        assert api.statuses() == [{"progress": "0/3"}]  # the first one at once
        w.update(KEY, {"progress": "1/3"})
        w.update(KEY, {"progress": "2/3"})
        await w.advance(0.5)
        assert len(api.statuses()) == 1  # not due yet
        await w.advance(0.5)
        assert api.statuses()[1:] == [{"progress": "2/3"}]  # only the latest
        assert pipeline["status"] == {"progress": "2/3"}  # what the server returned
        assert w.pending(KEY) is None

    scenario(test)


def test_an_urgent_change_is_written_at_once_and_nulls_what_it_drops() -> None:
    async def test(api: FakeApi, w: FakeClockWriter, pipeline: dict[str, Any]) -> None:
        w.update(KEY, {"progress": "0/1", "message": "x"})
        await settle()
        w.update(KEY, {"phase": "Succeeded"}, urgent=True)
        await settle()  # no clock advance
        assert api.statuses()[-1] == {"progress": None, "message": None, "phase": "Succeeded"}

    scenario(test)


def test_a_pipeline_gone_drops_its_status() -> None:
    async def test(api: FakeApi, w: FakeClockWriter, pipeline: dict[str, Any]) -> None:
        api.failures = [ApiError(404, "Not Found")]
        w.update(KEY, {"phase": "Running"}, urgent=True)
        await settle()
        await w.advance(60)
        assert len(api.statuses()) == 1 and w.pending(KEY) is None
        assert pipeline["status"] == {}

    scenario(test)


def test_a_failed_write_is_retried_after_the_backoff_as_urgent_as_it_was() -> None:
    async def test(api: FakeApi, w: FakeClockWriter, pipeline: dict[str, Any]) -> None:
        w.update(KEY, {"progress": "0/1"})
        await settle()
        api.failures = [ApiError(500, "Internal", '{"message": "etcd is sad"}')]
        w.update(KEY, {"phase": "Failed"}, urgent=True)
        await settle()
        assert len(api.statuses()) == 2  # tried at once, failed
        await w.advance(0.25)
        assert len(api.statuses()) == 2  # not before the first backoff step (0.5 s)
        await w.advance(0.25)
        assert len(api.statuses()) == 3 and pipeline["status"]["phase"] == "Failed"

    scenario(test)


def test_events_are_posted_in_order_before_the_status_they_explain() -> None:
    async def test(api: FakeApi, w: FakeClockWriter, pipeline: dict[str, Any]) -> None:
        w.post(KEY, [("Warning", "TaskFailed", "a failed"), ("Warning", "Degraded", "so")])
        w.update(KEY, {"phase": "Degraded"}, urgent=True)
        w.post(KEY, [("Normal", "Later", "after")])
        await settle()
        kinds = [entry if kind == "event" else kind for kind, entry in api.log]
        assert kinds[:3] == ["TaskFailed", "Degraded", "status"]
        assert "Later" in kinds

    scenario(test)


def test_a_replica_that_does_not_lead_writes_nothing() -> None:
    async def test(api: FakeApi, w: FakeClockWriter, pipeline: dict[str, Any]) -> None:
        w.post(KEY, [("Normal", "Started", "go")])
        w.update(KEY, {"phase": "Running"}, urgent=True)
        await settle()
        assert api.log == [] and w.pending(KEY) is None

    scenario(test, leading=False)
