"""One asyncio worker per Pipeline: wake on an event, gather, decide, act.

Why a worker per pipeline and not kopf's change handlers: kopf does not route
a child's events to its parent, and its change handlers write bookkeeping
annotations on every object. Here kopf only *watches* (indexes + event
handlers, which write nothing) and wakes the worker of the pipeline
concerned; the worker serialises that pipeline's reconciles, so no two run at
once for one pipeline, while different pipelines proceed concurrently.

The hot path is event-driven: a Job's watch event wakes its pipeline's worker
at once. Timers exist only for things that are due at a time (a retry
backoff, a timeout, a TTL): the plan says when, and the worker sleeps until
then or until woken, whichever comes first.

Workers exist on every replica (the caches they read stay warm), but they act
only while this replica leads (:meth:`Controller.lead`): then they create and
delete Jobs and hand statuses and Events to the one writer of both
(:class:`~sluice.shell.status.StatusWriter`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sluice.core.matrix import DEFAULT_MAX_MATRIX
from sluice.core.pods import PodView
from sluice.core.reconcile import JobView, Plan, reconcile
from sluice.core.stuck import STUCK_AFTER
from sluice.metrics import Metrics
from sluice.shell.backoff import BACKOFF
from sluice.shell.bodies import REJECTED, not_older, refused_status, slim
from sluice.shell.diagnose import Diagnoser
from sluice.shell.expectations import Expectations, Refusals
from sluice.shell.jobs import JobIndex, PipelineKey
from sluice.shell.kube import ApiError, Kube
from sluice.shell.podreads import PodReads
from sluice.shell.pods import PodIndex
from sluice.shell.prepared import PreparedCache
from sluice.shell.recorder import Recorder
from sluice.shell.status import STATUS_WRITERS, StatusWriter

__all__ = ["Controller", "not_older"]

log = logging.getLogger(__name__)

TasksSource = Callable[[str], Mapping[str, Mapping[str, Any]]]
Pods = Mapping[str, tuple[PodView, ...]]

"""Pipelines whose prepared spec is kept (about 36 KiB each): the most recently
reconciled ones. Fewer thrash when many pipelines run at once; all of them cost
too much memory at a thousand (bench/README.md)."""


@dataclass
class _Worker:
    key: PipelineKey
    body: dict[str, Any]
    """The Pipeline as the server last showed it (watch event or our own status write)."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    woken_by_completion: float | None = None
    errors: int = 0
    due: float | None = None
    """Monotonic time when something is due (a backoff, a timeout, a TTL, an error retry)."""
    fingerprint: tuple[Any, ...] | None = None
    """The inputs as the last reconcile left them (see `_fingerprint`)."""


class Controller:
    """Owns the workers; the kopf handlers call `pipeline_event` and `wake`."""

    def __init__(
        self,
        kube: Kube,
        tasks: TasksSource,
        metrics: Metrics,
        watch_timeout: float = 70.0,
        status_interval: float = 1.0,
        status_writers: int = STATUS_WRITERS,
        stuck_after: float = STUCK_AFTER,
        max_matrix: int = DEFAULT_MAX_MATRIX,
    ) -> None:
        self.kube = kube
        self.max_matrix = max_matrix
        """The cap on a matrix's width (``sluice run --max-matrix``)."""
        self.acting = False
        """True while this replica leads (`lead`): only then is anything written."""
        self.status = StatusWriter(
            kube, status_interval, status_writers, may_write=lambda: self.acting
        )
        """Seconds between two status writes of one pipeline, unless something
        significant happened (an Event, a phase change): those are written at once.
        A task's progress within a run can wait: the Jobs are the evidence, the
        status is a summary, and writing it is the API server's costliest request
        per task (bench/README.md). 0 writes every change at once."""
        self.job_index = JobIndex(kube, self.wake, idle_timeout=watch_timeout)
        self.job_index.on_relist = metrics.job_relists.inc
        self.pod_index = PodIndex(kube, self.wake, self.job_index.pipeline_of, watch_timeout)
        self.expectations = Expectations()
        self.refusals = Refusals()
        """Jobs the API server refused for their spec: failed attempts to the reconciler."""
        self.tasks = tasks
        self.metrics = metrics
        self.recorder = Recorder(metrics)
        self.diagnoser = Diagnoser(kube, stuck_after, on_read=metrics.stuck_reads.inc)
        self.pod_reads = PodReads(kube)
        self.workers: dict[PipelineKey, _Worker] = {}
        self.stopping = False
        self.task_epochs: dict[str, int] = {}
        """Per namespace, how many Task events were seen: a change of any Task."""
        self._prepared = PreparedCache(max_matrix=max_matrix)

    # ------------------------------------------------------------------ leadership
    def lead(self, leading: bool) -> None:
        """Act from now on (True: look at everything again) or stop acting (False)."""
        self.acting = leading
        self.recorder.lead(leading)
        if leading:
            self.wake_all()

    # ------------------------------------------------------------------ inputs
    def pipeline_event(self, event_type: str, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if event_type == "DELETED":
            self._forget(key)
            return
        worker = self.workers.get(key)
        if worker is None:
            worker = _Worker(key, slim(body))
            self.workers[key] = worker
            self.status.track(key, lambda: worker.body, lambda b: self._written(worker, b))
            self.job_index.synced(key[0])  # starts watching the namespace's Jobs
            self.pod_index.synced(key[0])  # and their pods (nothing waits for those)
            # A context of its own: created in a kopf handler, the task would otherwise
            # keep kopf's context variables (the cause, the first event's whole body)
            # alive for as long as the pipeline exists.
            worker.task = asyncio.create_task(
                self._run(worker), name=f"pipeline {key[0]}/{key[1]}", context=contextvars.Context()
            )
        elif meta.get("uid") != (worker.body.get("metadata") or {}).get("uid") or not_older(
            body, worker.body
        ):
            # Never step back to an older copy than the one our own patch returned.
            worker.body = slim(body)
        worker.wake.set()

    def _written(self, worker: _Worker, updated: dict[str, Any]) -> None:
        if not_older(updated, worker.body):
            worker.body = slim(updated)

    def wake(self, key: PipelineKey, completed: bool = False) -> None:
        worker = self.workers.get(key)
        if worker is None:
            return
        if completed and worker.woken_by_completion is None:
            worker.woken_by_completion = time.monotonic()
        worker.wake.set()

    def wake_all(self) -> None:
        for worker in self.workers.values():
            worker.fingerprint = None  # look again, whatever changed
            worker.wake.set()

    def wake_namespace(self, namespace: str) -> None:
        self.task_epochs[namespace] = self.task_epochs.get(namespace, 0) + 1
        for key, worker in self.workers.items():
            if key[0] == namespace:
                worker.wake.set()

    def _forget(self, key: PipelineKey) -> None:
        worker = self.workers.pop(key, None)
        if worker and worker.task:
            worker.task.cancel()
        if worker:  # its prepared specs too: a deleted pipeline keeps nothing behind
            self._prepared.forget((worker.body.get("metadata") or {}).get("uid"))
        self.status.forget(key)
        self.expectations.forget(key)
        self.refusals.forget(key)
        self.diagnoser.forget(key)
        if worker and not any(k[0] == key[0] for k in self.workers):
            self.job_index.release(key[0])
            self.pod_index.release(key[0])
        self.recorder.forget(key)

    async def stop(self) -> None:
        self.stopping = True
        tasks = [w.task for w in self.workers.values() if w.task]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.status.close()
        await self.job_index.stop()
        await self.pod_index.stop()

    # ------------------------------------------------------------------ the loop
    async def _run(self, worker: _Worker) -> None:
        # Nothing is decided before every Job of the namespace is known: a restarted
        # operator must see the Jobs it created before it died.
        await self.job_index.synced(worker.key[0]).wait()
        while not self.stopping:
            timeout = max(worker.due - time.monotonic(), 0.0) if worker.due is not None else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(worker.wake.wait(), timeout)
            worker.wake.clear()
            if worker.due is not None and time.monotonic() >= worker.due:
                worker.due = None
                worker.fingerprint = None  # something is due: decide again
            try:
                ran, requeue = await self._reconcile_once(worker)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.metrics.reconcile_errors.inc()
                self.metrics.reconcile_total.labels("error").inc()
                delay = BACKOFF.delay(worker.errors)
                worker.errors += 1
                worker.fingerprint = None
                log.exception(
                    "reconcile of pipeline %s/%s failed; retrying in %ss", *worker.key, delay
                )
                worker.due = time.monotonic() + delay
                continue
            if ran:
                worker.due = None if requeue is None else time.monotonic() + requeue

    def _effective_body(self, worker: _Worker) -> dict[str, Any]:
        """The Pipeline with the status this operator decided, written or about to be."""
        pending = self.status.pending(worker.key)
        return worker.body if pending is None else {**worker.body, "status": pending}

    def _jobs(self, worker: _Worker) -> list[JobView]:
        """The pipeline's Jobs: those the watch shows (owned by this very Pipeline) and
        those created but not shown yet."""
        ns, name = worker.key
        uid = (worker.body.get("metadata") or {}).get("uid") or ""
        seen = self.expectations.merge(worker.key, self.job_index.jobs(ns, name, owner=uid))
        return self.refusals.merge(worker.key, seen)

    def _fingerprint(
        self, worker: _Worker, body: Mapping[str, Any], jobs: list[JobView], pods: Pods
    ) -> tuple[Any, ...]:
        """What `reconcile` reads, cheaply compared: equal fingerprints, equal decisions.

        Of the Pipeline: uid, generation (the spec), annotations and status; the
        namespace's count of Task events; the Jobs and their pods as the reconciler sees them.
        Time is not in it: what is due at a time sets `_Worker.due`, and a
        wake-up at that time always reconciles.
        """
        meta = body.get("metadata") or {}
        return (
            meta.get("uid"),
            meta.get("generation"),
            meta.get("annotations") or {},
            body.get("status") or {},
            self.task_epochs.get(worker.key[0], 0),
            frozenset(jobs),
            frozenset(pods.items()),
        )

    async def _reconcile_once(self, worker: _Worker) -> tuple[bool, float | None]:
        """Reconcile unless nothing changed since the last time: (ran, requeue after)."""
        if not self.acting:
            return False, None  # not leading; lead(True) wakes every worker
        started = time.perf_counter()
        ns, _ = worker.key
        body = self._effective_body(worker)
        jobs = self._jobs(worker)
        pods = self.pod_index.pods(ns, jobs)
        if (
            worker.fingerprint is not None
            and self._fingerprint(worker, body, jobs, pods) == worker.fingerprint
        ):
            # Our own status write or a Job we created coming back through the
            # watch: the inputs are those the last reconcile left, and reconcile
            # is a fixpoint there (tests/unit/test_bench_invariants.py).
            worker.woken_by_completion = None
            self.metrics.reconcile_skipped.inc()
            return False, None
        tasks = self.tasks(ns)
        now = datetime.now(UTC)
        prepared = self._prepared.get(body, tasks, self.task_epochs.get(ns, 0))
        # The pod view's pods, plus targeted reads: of the Jobs whose results are needed
        # and not in the view (podreads.py), of stuck steps' Jobs (diagnose.py).
        known = await self.pod_reads.for_reconcile(ns, body, jobs, prepared, view=pods)
        plan = await self.diagnoser.decide(
            worker.key,
            [j.name for j in jobs if j.state == "Active"],
            functools.partial(
                reconcile, body, tasks, jobs, now, prepared=prepared, max_matrix=self.max_matrix
            ),
            known,
        )
        # Not held while the Jobs are created: a worker waiting on the API server would
        # keep its prepared spec (about 40 KiB) alive beyond the cache's bound, and with
        # 1,000 pipelines started at once, 1,000 of them wait (bench/README.md, memory).
        del prepared
        completion_seen = worker.woken_by_completion
        worker.woken_by_completion = None
        created, decided = await self._apply(worker, plan, now, body)
        requeue = plan.requeue_after if worker.errors == 0 else BACKOFF.delay(worker.errors - 1)
        if plan.create and completion_seen is not None:
            self.metrics.handoff.observe(time.monotonic() - completion_seen)
        self.metrics.reconcile_duration.observe(time.perf_counter() - started)
        self.metrics.reconcile_total.labels("requeue" if requeue is not None else "success").inc()
        self.recorder.plan(worker.key, plan, self._effective_body(worker).get("status") or {})
        # The inputs this reconcile saw, with its own effects: the status it decided
        # and the Jobs it created. Not what arrived in the meantime: that must wake
        # the next reconcile. Nothing after a failure.
        worker.fingerprint = None
        if worker.errors == 0:
            after = body if decided is None else {**body, "status": decided}
            worker.fingerprint = self._fingerprint(worker, after, jobs + created, pods)
        return True, requeue

    async def _apply(
        self, worker: _Worker, plan: Plan, now: datetime, body: Mapping[str, Any]
    ) -> tuple[list[JobView], dict[str, Any] | None]:
        """Create and delete the plan's Jobs, then hand its status and Events to the
        writer: the views of the Jobs created, and the new status if any. A refused
        create posts an Event and a status message instead, and is retried after a
        backoff (`worker.errors`). A create refused for the Job's spec (400, 422) is
        the user's to fix, not retried: it becomes that attempt's failed Job
        (`Refusals`), and the worker looks again at once."""
        ns, _ = worker.key
        failures: list[str] = []
        created: list[JobView] = []
        rejected: list[str] = []

        async def create(manifest: dict[str, Any]) -> None:
            problem, code = await self._create(ns, manifest)
            if problem is not None:
                name = manifest["metadata"]["name"]
                if code in REJECTED:
                    self.refusals.refuse(worker.key, manifest, problem, now)
                    rejected.append(f"{name}: {problem}")
                else:
                    failures.append(f"{name}: {problem}")
                return
            view = self.expectations.expect(worker.key, manifest, now)
            if view is not None:
                created.append(view)

        await asyncio.gather(
            *(create(m) for m in plan.create), *(self._delete(ns, j) for j in plan.delete)
        )
        for job_name in plan.delete:
            self.refusals.drop(worker.key, job_name)
        if rejected:
            log.warning("pipeline %s/%s: Job refused: %s", *worker.key, "; ".join(rejected[:3]))
            worker.wake.set()  # the next reconcile sees the refused attempt as failed
        if failures:
            # Don't record attempts whose Jobs don't exist; say why and try again soon.
            message = "Could not create Jobs: " + "; ".join(failures[:3])
            log.warning("pipeline %s/%s: %s", *worker.key, message)
            self.status.post(worker.key, [("Warning", "JobCreateFailed", message)])
            current = self._effective_body(worker).get("status") or {}
            self.status.update(worker.key, refused_status(body, current, message), urgent=True)
            worker.errors += 1
            return created, None
        worker.errors = 0
        if plan.events:
            self.status.post(worker.key, [(e.type, e.reason, e.message) for e in plan.events])
        if plan.status is not None:
            # plan.status is a merge patch over the status reconcile was given.
            old = body.get("status") or {}
            merged = {**old, **plan.status}
            status = {k: v for k, v in merged.items() if v is not None}
            urgent = bool(plan.events) or status.get("phase") != old.get("phase")
            self.status.update(worker.key, status, urgent=urgent)
            return created, status
        return created, None

    async def _create(self, ns: str, manifest: dict[str, Any]) -> tuple[str | None, int]:
        """Create one Job: (None, 0) when it exists now, else (what went wrong, HTTP status)."""
        try:
            sent = time.monotonic()
            await self.kube.create_job(ns, manifest)
            self.metrics.job_create.observe(time.monotonic() - sent)
            self.metrics.jobs_created.inc()
        except ApiError as e:
            if e.status != 409:
                self.metrics.job_api_errors.labels("create", str(e.status)).inc()
                return e.message, e.status
            # AlreadyExists: this attempt's Job is there (we created it before a
            # crash) -- unless the name belongs to someone else's object.
            if not await self._owned(ns, manifest):
                self.metrics.job_api_errors.labels("create", "409").inc()
                return "a Job of that name exists and belongs to something else", 409
        return None, 0

    async def _delete(self, ns: str, job_name: str) -> None:
        try:
            await self.kube.delete_job(ns, job_name)
        except ApiError as e:
            if e.status != 404:
                self.metrics.job_api_errors.labels("delete", str(e.status)).inc()
                log.warning("deleting Job %s/%s failed: %s", ns, job_name, e.message)

    async def _owned(self, ns: str, manifest: dict[str, Any]) -> bool:
        try:
            existing = await self.kube.read_job(ns, manifest["metadata"]["name"])
        except ApiError:
            return True  # gone again, or unreadable: the next reconcile sees the truth
        meta = existing.get("metadata") or {}
        want_uid = manifest["metadata"]["ownerReferences"][0]["uid"]
        want_task = manifest["metadata"]["annotations"].get("sluice.dev/task-name")
        owners = {o.get("uid") for o in meta.get("ownerReferences") or []}
        task = (meta.get("annotations") or {}).get("sluice.dev/task-name")
        return want_uid in owners and task == want_task
