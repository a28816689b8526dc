"""Step caching in a reconcile: skip a step whose inputs match a succeeded step of an earlier run.

The key and the entry policy are ``sluice.core.cache_key``'s; this module wires them in:

* ``cache_key.inputs`` (from ``Prepared``, once per spec): for every main step whose
  effective cache policy is enabled, the part of its key the spec fixes (the Task with its
  params substituted, the params' values). Matrixed steps and finally steps are never
  cached (a finally step reads ``$(tasks.status)``, which is in no key).
* :func:`restore` (``gates.schedule``, just before a new attempt's Job is built): the key,
  with the results the step consumes; on a hit the step is ``Succeeded``, reason
  ``Cached``, message ``cached from run N``, its results restored, and no Job is created.
* :func:`remember` (``attempts``, where a step's success is recorded): the entry kept in
  ``status.cache``.

Scope: the runs of one Pipeline (reruns, scheduled runs, a recovered run); entries live in
its status, written by the one status writer and deleted with the Pipeline. Bounded: one
entry per (step, key), at most ``min(100, 2 x cached steps)`` entries, none older than 30
days, and their results together at most :data:`CACHE_RESULTS_BYTES`.
"""

from __future__ import annotations

from collections.abc import Sequence

from sluice.api import TaskStatus
from sluice.api.schedule import CACHE_CAP_PER_PIPELINE, CacheRecord
from sluice.core import results
from sluice.core.cache_key import CacheEntry, cache_key, lookup
from sluice.core.cache_key import remember as remember_entry
from sluice.core.decision import Decision
from sluice.core.phases import T
from sluice.core.reference_syntax import Ref
from sluice.core.references import result_text

__all__ = ["CACHE_RESULTS_BYTES", "remember", "restore"]

CACHE_RESULTS_BYTES = results.STATUS_BUDGET_BYTES // 4
"""What the results of ``status.cache`` take at most (a quarter of the results budget)."""


def restore(d: Decision, ts: TaskStatus, refs: Sequence[tuple[str, Ref]]) -> bool:
    """Whether step ``ts`` is done from the cache now (no Job); ``refs`` are its references.

    Only for a cached step about to start a fresh attempt. Writes ``ts.cacheKey``; on a
    hit the step's phase, reason, message, times and results, an Event and a wake-up (its
    dependents start in the next reconcile); ``plan.cache_hits`` or ``cache_misses``.
    """
    cached = d.cache.get(ts.name)
    if cached is None or ts.phase != T.PENDING or ts.attempts != ts.retry_base:
        return False
    upstream: dict[str, dict[str, str]] = {}
    for _, ref in refs:
        if ref.kind == "result":
            value = (d.step(ref.step).results or {}).get(ref.name)
            if value is not None:
                upstream.setdefault(ref.step, {})[ref.name] = result_text(value)
    ts.cache_key = cache_key(cached.task, cached.params, upstream)
    st = d.status
    entry = None
    if not st.ignore_cache:
        entries = [_entry(r) for r in st.cache or ()]
        entry = lookup(
            entries, ts.cache_key, now=d.now, max_age_seconds=cached.policy.max_age_seconds
        )
    if entry is None:
        d.plan.cache_misses += 1
        return False
    d.plan.cache_hits += 1
    ts.phase = T.SUCCEEDED  # not d.move: no attempt ran, none is counted or timed
    ts.started_at = ts.finished_at = d.now
    ts.reason, ts.message = "Cached", f"cached from run {entry.run}"
    ts.results = dict(entry.results) or None
    ts.job = ts.next_retry_at = None
    d.event("Normal", "TaskCached", f'Task "{ts.name}" not run: cached from run {entry.run}.')
    d.due_in(d.now)  # its dependents are gated by the next reconcile
    return True


def remember(d: Decision, ts: TaskStatus) -> None:
    """Keep the succeeded step ``ts`` in ``status.cache`` when it is a cached step."""
    if ts.cache_key is None or ts.name not in d.cache or ts.finished_at is None:
        return
    st = d.status
    entry = CacheEntry(ts.name, ts.cache_key, st.run, ts.finished_at, dict(ts.results or {}))
    cap = min(CACHE_CAP_PER_PIPELINE, 2 * len(d.cache))
    kept = remember_entry([_entry(r) for r in st.cache or ()], entry, now=d.now, cap=cap)
    records, used = [], 0
    for e in kept:  # newest first: the oldest go when the results do not fit
        used += results.status_bytes(e.results)
        if used > CACHE_RESULTS_BYTES:
            break
        records.append(_record(e))
    st.cache = records or None


def _entry(r: CacheRecord) -> CacheEntry:
    return CacheEntry(r.step, r.key, r.run, r.finished_at, dict(r.results or {}))


def _record(e: CacheEntry) -> CacheRecord:
    return CacheRecord(
        step=e.step,
        key=e.key,
        run=e.run,
        finished_at=e.finished_at,
        results=dict(e.results) or None,
    )
