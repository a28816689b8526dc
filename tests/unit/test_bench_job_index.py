"""The operator's own Job watch (sluice.shell.jobs), which replaced kopf's Job
index for speed (bench/README.md): listed before anything is decided, kept
up to date by the watch, relisted after a 410 without ever being empty, each
Job read once at ingest into the reconciler's own view (JobView)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sluice.core.reconcile import observe_job
from sluice.shell.jobs import SELECTOR, JobIndex
from sluice.shell.kube import ApiError


def job(name: str, pipeline: str = "p", ns: str = "ns", complete: bool = False) -> dict[str, Any]:
    conditions = [{"type": "Complete", "status": "True"}] if complete else []
    return {
        "metadata": {
            "name": name,
            "namespace": ns,
            "resourceVersion": "1",
            "labels": {"sluice.dev/run": "1", "sluice.dev/attempt": "1", "other": "x"},
            "annotations": {"sluice.dev/pipeline-name": pipeline, "sluice.dev/task-name": name},
            "ownerReferences": [{"uid": f"uid-{pipeline}"}],
            "managedFields": [{"manager": "big"}],
        },
        "spec": {"template": {}},
        "status": {"conditions": conditions},
    }


class FakeKube:
    def __init__(
        self,
        pages: list[list[dict[str, Any]]],
        watches: list[list[Any]],
        relist_pages: list[list[dict[str, Any]]] | None = None,
    ) -> None:
        self.pages = pages
        self.relist_pages = relist_pages
        self.watches = watches
        self.lists = 0
        self.selectors: set[str] = set()

    async def list_jobs(
        self, namespace: str, selector: str, limit: int = 500, continue_: str | None = None
    ) -> dict[str, Any]:
        self.selectors.add(selector)
        i = int(continue_ or 0)
        if i == 0:
            self.lists += 1
            if self.lists > 1 and self.relist_pages is not None:
                self.pages = self.relist_pages
        more = i + 1 < len(self.pages)
        meta = {"resourceVersion": "10", "continue": str(i + 1) if more else ""}
        return {"metadata": meta, "items": self.pages[i]}

    async def watch_jobs(
        self, namespace: str, selector: str, rv: str, idle_timeout: float
    ) -> AsyncIterator[dict[str, Any]]:
        if not self.watches:
            await asyncio.sleep(3600)
        for event in self.watches.pop(0):
            if isinstance(event, Exception):
                raise event
            yield event


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_lists_every_page_before_it_says_synced_then_follows_the_watch() -> None:
    async def scenario() -> None:
        kube = FakeKube(
            pages=[[job("a")], [job("b"), job("x", pipeline="q")]],
            watches=[
                [
                    {"type": "MODIFIED", "object": job("a", complete=True)},
                    {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}},
                    {"type": "DELETED", "object": job("b")},
                    {"type": "ADDED", "object": job("c")},
                ]
            ],
        )
        changes: list[tuple[tuple[str, str], bool]] = []
        index = JobIndex(kube, lambda key, done: changes.append((key, done)))  # type: ignore[arg-type]
        synced = index.synced("ns")
        await asyncio.wait_for(synced.wait(), 1)
        await _settle()
        names = sorted(j.name for j in index.jobs("ns", "p"))
        assert names == ["a", "c"]
        assert [j.name for j in index.jobs("ns", "q")] == ["x"]
        assert [j.name for j in index.jobs("ns", "q", owner="uid-q")] == ["x"]
        assert index.jobs("ns", "q", owner="uid-p") == []  # same name, another Pipeline
        assert (("ns", "p"), True) in changes  # a completed: the hand-off wake-up
        assert kube.selectors == {SELECTOR}
        a = next(j for j in index.jobs("ns", "p") if j.name == "a")
        assert a == observe_job(job("a", complete=True))  # the reconciler's own view
        index.release("ns")
        assert index.jobs("ns", "p") == []
        await index.stop()

    asyncio.run(scenario())


def test_a_gone_watch_relists_and_swaps_the_records_at_once() -> None:
    async def scenario() -> None:
        kube = FakeKube(
            pages=[[job("a"), job("b")]],
            watches=[[ApiError(410, "Gone")]],
            relist_pages=[[job("b", complete=True)]],  # a vanished during the gap
        )
        index = JobIndex(kube, lambda key, done: None)  # type: ignore[arg-type]
        await asyncio.wait_for(index.synced("ns").wait(), 1)
        await _settle()
        assert kube.lists == 2
        (b,) = index.jobs("ns", "p")
        assert b.name == "b"
        assert b.state == "Succeeded"
        await index.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize("error", [ConnectionResetError("reset"), ApiError(500, "boom")])
def test_a_broken_watch_resumes_without_listing_again(error: Exception) -> None:
    async def scenario() -> None:
        kube = FakeKube(
            pages=[[job("a")]],
            watches=[[error], [{"type": "ADDED", "object": job("b")}]],
        )
        index = JobIndex(kube, lambda key, done: None)  # type: ignore[arg-type]
        await asyncio.wait_for(index.synced("ns").wait(), 1)
        for _ in range(100):
            if len(index.jobs("ns", "p")) == 2:
                break
            await asyncio.sleep(0.05)
        assert sorted(j.name for j in index.jobs("ns", "p")) == ["a", "b"]
        assert kube.lists == 1
        await index.stop()

    asyncio.run(scenario())
