"""Targeted reads of one Job's pods, for what the reconciler needs of them (``pods=``).

Today one thing needs them: the results of a succeeded attempt of a step that declares
results, not recorded yet (``core.harvest.wanted``). For each such Job the pods are listed
by its job-name label, once; nothing is read for any other step, so they cost no extra
request. A pod view (a watch of every pod of Sluice's Jobs) would be consulted first and
make most of these reads unneeded.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sluice.core import harvest
from sluice.core.observe import JobView
from sluice.core.pods import JOB_NAME_LABELS, PodView, observe_pod
from sluice.core.prepare import Prepared
from sluice.shell.kube import ApiError, Kube

__all__ = ["PodReads", "job_pods"]

log = logging.getLogger(__name__)

_KEPT = 1024
"""Reads remembered (so one Job's pods are read once even if its status write lags)."""


async def job_pods(kube: Kube, namespace: str, job: str) -> list[PodView]:
    """The pods of one Job (a targeted read: that Job's pods only, by its job-name label)."""
    page = await kube.list_pods(namespace, f"{JOB_NAME_LABELS[0]}={job}")
    return [observe_pod(p) for p in page.get("items") or []]


class PodReads:
    """The pods of the Jobs a reconcile needs them for, read when needed and once."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._read: OrderedDict[tuple[str, str], tuple[PodView, ...]] = OrderedDict()
        self.reads = 0
        """Lists made (for tests and the bench)."""

    async def for_reconcile(
        self,
        namespace: str,
        body: Mapping[str, Any],
        jobs: Iterable[JobView],
        prepared: Prepared | None,
        view: Mapping[str, Sequence[PodView]] | None = None,
    ) -> dict[str, Sequence[PodView]]:
        """The pod view's pods (``view``), plus those of every Job of ``jobs`` whose
        results the reconcile needs and that the view does not have (read)."""
        out: dict[str, Sequence[PodView]] = dict(view or {})
        if prepared is None or not prepared.declared:
            return out
        names = harvest.wanted(body.get("status"), jobs, prepared.declared)
        for job in [n for n in names if n not in out]:
            pods = await self.job_pods(namespace, job)
            if pods is not None:
                out[job] = pods
        return out

    async def job_pods(self, namespace: str, job: str) -> tuple[PodView, ...] | None:
        """Job ``job``'s pods (None: they could not be read; the next reconcile tries again)."""
        key = (namespace, job)
        if key in self._read:
            self._read.move_to_end(key)
            return self._read[key]
        try:
            pods = tuple(await job_pods(self.kube, namespace, job))
        except ApiError as e:
            log.warning("reading the pods of Job %s/%s failed: %s", namespace, job, e.message)
            return None
        self.reads += 1
        self._read[key] = pods
        while len(self._read) > _KEPT:
            self._read.popitem(last=False)
        return pods
