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
from sluice.core.retry import JOB_REJECTED
from sluice.shell.jobs import PipelineKey

__all__ = ["EXPECTATION_TTL", "REJECTED", "Expectations", "Refusals"]

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


REJECTED = JOB_REJECTED


class Refusals:
    """Jobs the API server refused to create because of their spec (400, 422).

    Such a refusal is the user's to fix, not a hiccup to retry: the reconciler
    sees it as that attempt's Job, failed with reason ``JobRejected`` and the
    API server's own message (`observe_job` of the manifest with a Failed
    condition), so the step fails as for any failed Job and a corrected Task
    recovers it the same way. Kept until the reconciler deletes that Job or
    the pipeline goes; a restarted operator creates it again and is refused
    again.
    """

    def __init__(self) -> None:
        self._refused: dict[PipelineKey, dict[str, JobView]] = {}

    def refuse(
        self, key: PipelineKey, manifest: Mapping[str, Any], message: str, now: datetime
    ) -> None:
        meta = manifest.get("metadata") or {}
        at = rfc3339(now)
        failed = {"type": "Failed", "status": "True", "reason": REJECTED, "message": message}
        view = observe_job(
            {
                **manifest,
                "metadata": {**meta, "creationTimestamp": at},
                "status": {"conditions": [{**failed, "lastTransitionTime": at}]},
            }
        )
        if view is not None:
            self._refused.setdefault(key, {})[view.name] = view

    def merge(self, key: PipelineKey, jobs: list[JobView]) -> list[JobView]:
        refused = self._refused.get(key)
        if not refused:
            return jobs
        names = {j.name for j in jobs}
        return jobs + [v for n, v in refused.items() if n not in names]

    def drop(self, key: PipelineKey, job_name: str) -> None:
        refused = self._refused.get(key)
        if refused is not None:
            refused.pop(job_name, None)
            if not refused:
                del self._refused[key]

    def forget(self, key: PipelineKey) -> None:
        self._refused.pop(key, None)
