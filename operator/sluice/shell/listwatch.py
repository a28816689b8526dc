"""One list+watch per namespace of label-selected objects, kept in memory by a
subclass: the mechanism under the Job index (shell/jobs.py) and the pod view
(shell/pods.py).

Why not kopf: kopf runs every watch event of every object through its whole
machinery (a per-object worker task, per-object memory kept until the object
is deleted, loggers, cause detection, handler invocation), and Jobs and pods
are most of the events and most of the objects Sluice sees. The benchmarks
(bench/README.md) found that machinery to be the largest cost per task in CPU
and in memory. Here an event costs a JSON decode, a dict update and a wake-up.

:meth:`ListWatch.synced` is set once the first complete list of a namespace is
in; a page of that first list the API server does not answer within
:data:`ANSWER_TIMEOUT` is asked again at once, with a warning (a server that
accepts a connection and answers late must not hold the workers for the
client's 30 s, silently). A watch that breaks resumes from its last resourceVersion; one that is too
old (410 Gone) lists again and the subclass swaps the namespace's records at
once (:meth:`ListWatch.replace`), never leaving them empty in between.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from sluice.shell.backoff import BACKOFF
from sluice.shell.kube import ApiError

__all__ = ["ListPage", "ListWatch", "WatchStream"]

log = logging.getLogger(__name__)

ListPage = Callable[[str, str, str | None], Awaitable[dict[str, Any]]]
"""(namespace, selector, continue token) -> one page of the list."""
WatchStream = Callable[[str, str, str, float], AsyncIterator[dict[str, Any]]]
"""(namespace, selector, resourceVersion, idle timeout) -> the watch's events."""


class _Gone(Exception):
    """The watch's resourceVersion is too old: list again."""


class _Stalled(Exception):
    """No answer to a list before the namespace is synced: ask again, on a new connection."""


ANSWER_TIMEOUT = 3.0
"""Seconds a page of a namespace's first list may go unanswered. The API server
may accept a connection and answer late (overloaded, starting, a proxy in
between); the workers of that namespace wait for this list, so it is asked
again at once, saying so, rather than after the client's 30 s timeout."""


class ListWatch:
    """Per namespace in use, one list+watch; the subclass keeps what it reads."""

    what = "objects"
    """What is watched, for the log."""

    def __init__(
        self, list_page: ListPage, watch: WatchStream, selector: str, idle_timeout: float
    ) -> None:
        self._list_page = list_page
        self._watch_stream = watch
        self.selector = selector
        self.idle_timeout = idle_timeout
        self.answer_timeout = ANSWER_TIMEOUT
        self._synced: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.on_relist: Callable[[], None] = lambda: None
        """Called after every complete list (the first one and each after a 410)."""

    # ------------------------------------------------------------------ for subclasses
    def ingest(self, obj: Mapping[str, Any]) -> Any:
        """An object of a list, read (trimmed) at once; None: not one to keep."""
        raise NotImplementedError

    def replace(self, namespace: str, records: list[Any]) -> None:
        """A complete list of the namespace (what `ingest` kept): swap its records at once."""
        raise NotImplementedError

    def apply(self, kind: str, obj: Mapping[str, Any]) -> None:
        """One watch event (ADDED, MODIFIED, DELETED) of one object."""
        raise NotImplementedError

    def drop(self, namespace: str) -> None:
        """Forget everything of a namespace no longer watched."""
        raise NotImplementedError

    # ------------------------------------------------------------------ lifecycle
    def synced(self, namespace: str) -> asyncio.Event:
        """Set once the namespace's objects are all known; watching starts on first use."""
        if namespace not in self._tasks:
            self._synced[namespace] = asyncio.Event()
            self._tasks[namespace] = asyncio.create_task(
                self._run(namespace),
                name=f"{self.what} in {namespace}",
                context=contextvars.Context(),
            )
        return self._synced[namespace]

    def release(self, namespace: str) -> None:
        """Stop watching a namespace no pipeline is in any more."""
        task = self._tasks.pop(namespace, None)
        if task is not None:
            task.cancel()
        self._synced.pop(namespace, None)
        self.drop(namespace)

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    # ------------------------------------------------------------------ the loop
    async def _run(self, namespace: str) -> None:
        rv: str | None = None
        errors = 0
        while True:
            try:
                if rv is None:
                    rv = await self._list(namespace)
                    self._synced[namespace].set()
                rv = await self._watch(namespace, rv)
                errors = 0
            except asyncio.CancelledError:
                raise
            except _Gone:
                rv = None  # too old: list again, at once
            except _Stalled:
                errors += 1
                log.warning(
                    "listing %s in %s: no answer from the API server in %ss (%d times); "
                    "asking again",
                    self.what,
                    namespace,
                    self.answer_timeout,
                    errors,
                )
            except Exception as e:  # network, server, or anything: resume after a pause
                delay = BACKOFF.delay(errors)
                errors += 1
                level = logging.WARNING if errors > 1 else logging.INFO
                log.log(
                    level, "watching %s in %s: %r; again in %ss", self.what, namespace, e, delay
                )
                await asyncio.sleep(delay)

    async def _list(self, namespace: str) -> str:
        records: list[Any] = []
        continue_: str | None = None
        while True:
            page = await self._page(namespace, continue_)
            kept = (self.ingest(item) for item in page.get("items") or [])
            records.extend(r for r in kept if r is not None)
            meta = page.get("metadata") or {}
            continue_ = meta.get("continue")
            if not continue_:
                rv: str = meta.get("resourceVersion") or ""
                break
        self.replace(namespace, records)
        self.on_relist()
        return rv

    async def _page(self, namespace: str, continue_: str | None) -> dict[str, Any]:
        request = self._list_page(namespace, self.selector, continue_)
        if self._synced[namespace].is_set():
            return await request  # the workers are not waiting: the client's own timeouts
        try:
            return await asyncio.wait_for(request, self.answer_timeout)
        except TimeoutError as e:
            raise _Stalled from e

    async def _watch(self, namespace: str, rv: str) -> str:
        try:
            async for event in self._watch_stream(namespace, self.selector, rv, self.idle_timeout):
                obj = event.get("object") or {}
                rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                kind = event.get("type") or ""
                if kind != "BOOKMARK":
                    self.apply(kind, obj)
        except ApiError as e:
            if e.status == 410:
                raise _Gone from e
            raise
        except TimeoutError:
            pass  # quiet for idle_timeout: reconnect from where we are
        return rv
