"""Jobs this operator created and its watch has not shown yet.

A Job create returns before the Job comes back through the watch; until it
does, the reconciler must count it as existing, or it would create it again.
Each expectation is the reconciler's own view of the Job (`observe_job` of the
manifest sent), kept until the watch shows that Job or `ttl` seconds pass (then
the Job counts as deleted, and the reconciler decides again from what exists).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from sluice.api import rfc3339
from sluice.core.reconcile import JobView, observe_job
from sluice.shell.jobs import PipelineKey

__all__ = ["EXPECTATION_TTL", "Expectations"]

EXPECTATION_TTL = 120.0


class Expectations:
    def __init__(
        self, ttl: float = EXPECTATION_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self._expected: dict[PipelineKey, dict[str, tuple[float, JobView]]] = {}

    def expect(
        self, key: PipelineKey, manifest: Mapping[str, Any], now: datetime
    ) -> JobView | None:
        """Record a Job just created from ``manifest`` (created at ``now``); its view."""
        meta = manifest.get("metadata") or {}
        view = observe_job({**manifest, "metadata": {**meta, "creationTimestamp": rfc3339(now)}})
        if view is not None:
            self._expected.setdefault(key, {})[view.name] = (self.clock(), view)
        return view

    def merge(self, key: PipelineKey, seen: Iterable[JobView]) -> list[JobView]:
        """``seen`` (from the watch) plus the expected Jobs it does not show yet."""
        jobs = list(seen)
        expected = self._expected.get(key)
        if not expected:
            return jobs
        names = {j.name for j in jobs}
        now = self.clock()
        for name, (created, view) in list(expected.items()):
            if name in names or now - created > self.ttl:
                del expected[name]
            else:
                jobs.append(view)
        if not expected:
            del self._expected[key]
        return jobs

    def pending(self, key: PipelineKey) -> set[str]:
        return set(self._expected.get(key, {}))

    def forget(self, key: PipelineKey) -> None:
        self._expected.pop(key, None)
