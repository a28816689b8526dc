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
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from sluice.api import parse_rfc3339, rfc3339
from sluice.core import naming
from sluice.core.reconcile import Event, Plan, Prepared, prepare, reconcile
from sluice.metrics import Metrics
from sluice.shell.jobs import JobIndex
from sluice.shell.kube import ApiError, Kube

__all__ = ["Controller", "PipelineKey"]

log = logging.getLogger(__name__)

PipelineKey = tuple[str, str]  # (namespace, name)

JobsSource = Callable[[str, str], list[dict[str, Any]]]
TasksSource = Callable[[str], Mapping[str, Mapping[str, Any]]]

_EXPECTATION_TTL = 120.0
"""How long a Job we created may stay unseen by the watch before we stop
pretending it exists (it then counts as deleted)."""

_ERROR_BACKOFF = (0.5, 1, 2, 5, 10, 30)

STATUS_WRITERS = 4
"""Default of `Controller.status_lane`'s width (`sluice run --status-writers`)."""

_PREPARED_CACHE = 256
"""Pipelines whose prepared spec is kept (about 36 KiB each): the most recently
reconciled ones. Fewer thrash when many pipelines run at once; all of them cost
too much memory at a thousand (bench/README.md)."""


def _rv(body: Mapping[str, Any]) -> int:
    try:
        return int((body.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


@dataclass
class _Worker:
    key: PipelineKey
    body: dict[str, Any]
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    expected: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    woken_by_completion: float | None = None
    errors: int = 0
    phase: str | None = None
    due: float | None = None
    """Monotonic time when something is due (a backoff, a timeout, a TTL, an error retry)."""
    fingerprint: tuple[Any, ...] | None = None
    """The inputs as the last reconcile left them (see `_fingerprint`)."""
    pending: dict[str, Any] | None = None
    """The status decided but not written yet (see `Controller.status_interval`)."""
    flush_at: float | None = None
    """Monotonic time the pending status is to be written."""
    last_write: float = -1e9
    """Monotonic time of the last status write."""
    urgent: bool = False
    """The pending status holds a significant change: write it without waiting."""
    flush_task: asyncio.Task[None] | None = None
    events_task: asyncio.Task[None] | None = None
    flush_errors: int = 0
    retry_at: float = 0.0
    """After a failed status write: not before this monotonic time."""

    def status(self) -> dict[str, Any]:
        """The status as this operator knows it: written or about to be."""
        if self.pending is not None:
            return self.pending
        status: dict[str, Any] = self.body.get("status") or {}
        return status

    def effective_body(self) -> dict[str, Any]:
        return self.body if self.pending is None else {**self.body, "status": self.pending}


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
    ) -> None:
        self.kube = kube
        self.status_interval = status_interval
        """Seconds between two status writes of one pipeline, unless something
        significant happened (an Event, a phase change): those are written at once.
        A task's progress within a run can wait: the Jobs are the evidence, the
        status is a summary, and writing it is the API server's costliest request
        per task (bench/README.md). 0 writes every change at once."""
        self.status_lane = asyncio.Semaphore(status_writers)
        """Status writes and Events in flight at once, all pipelines together. They
        run beside the workers (a worker never waits for its status to be written),
        queue here when the API server is busy, and coalesce while they queue: Job
        creations, on which the hand-off latency depends, go first. A Pipeline status
        write costs the API server about 5 ms of CPU, a Job create 1-2 ms: with 4
        writers instead of 8, 200 chains at once wrote half as many statuses, the
        final status came as soon, and the hand-offs got the CPU (bench/README.md)."""
        self.job_index = JobIndex(kube, self.wake, idle_timeout=watch_timeout)
        self.jobs: JobsSource = self.job_index.jobs
        self.tasks = tasks
        self.metrics = metrics
        self.workers: dict[PipelineKey, _Worker] = {}
        self.stopping = False
        self.may_act: Callable[[], bool] = lambda: True
        """False while another replica may lead: then nothing is written."""
        self.task_epochs: dict[str, int] = {}
        """Per namespace, how many Task events were seen: a change of any Task."""
        self._prepared: OrderedDict[tuple[Any, ...], Prepared] = OrderedDict()
        self.skipped = 0
        """Wake-ups whose inputs were unchanged since the last reconcile."""

    # ------------------------------------------------------------------ inputs
    def pipeline_event(self, event_type: str, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if event_type == "DELETED":
            self._forget(key)
            return
        worker = self.workers.get(key)
        if worker is None:
            worker = _Worker(key, _slim(body))
            self.workers[key] = worker
            self.job_index.synced(key[0])  # starts watching the namespace's Jobs
            # A context of its own: created in a kopf handler, the task would otherwise
            # keep kopf's context variables (the cause, the first event's whole body)
            # alive for as long as the pipeline exists.
            worker.task = asyncio.create_task(
                self._run(worker), name=f"pipeline {key[0]}/{key[1]}", context=contextvars.Context()
            )
        elif (meta.get("uid") != (worker.body.get("metadata") or {}).get("uid")) or _rv(
            body
        ) >= _rv(worker.body):
            # Never step back to an older copy than the one our own patch returned.
            worker.body = _slim(body)
        worker.wake.set()

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
        if worker and worker.flush_task:
            worker.flush_task.cancel()
        if worker and worker.events_task:
            worker.events_task.cancel()
        if worker and not any(k[0] == key[0] for k in self.workers):
            self.job_index.release(key[0])
        with contextlib.suppress(KeyError):
            self.metrics.pipeline_degraded.remove(*key)
        self._update_phase_gauge()

    async def stop(self) -> None:
        self.stopping = True
        tasks = [w.task for w in self.workers.values() if w.task]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Best effort: statuses not written yet (a restart would rebuild them from the Jobs).
        flushes = [t for w in self.workers.values() for t in (w.flush_task, w.events_task) if t]
        flushes += [
            asyncio.create_task(self._flush(w))
            for w in self.workers.values()
            if w.pending is not None and not w.flush_task
        ]
        if flushes:
            await asyncio.wait(flushes, timeout=5)
        await self.job_index.stop()
        await self.kube.close()

    # ------------------------------------------------------------------ the loop
    async def _run(self, worker: _Worker) -> None:
        # Nothing is decided before every Job of the namespace is known: a restarted
        # operator must see the Jobs it created before it died.
        await self.job_index.synced(worker.key[0]).wait()
        while not self.stopping:
            deadlines = [t for t in (worker.due, worker.flush_at) if t is not None]
            timeout = max(min(deadlines) - time.monotonic(), 0.0) if deadlines else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(worker.wake.wait(), timeout)
            worker.wake.clear()
            now = time.monotonic()
            if worker.flush_at is not None and now >= worker.flush_at:
                self._start_flush(worker)
            if worker.due is not None and now >= worker.due:
                worker.due = None
                worker.fingerprint = None  # something is due: decide again
            try:
                ran, requeue = await self._reconcile_once(worker)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.metrics.reconcile_errors.inc()
                self.metrics.reconcile_total.labels("error").inc()
                delay = _ERROR_BACKOFF[min(worker.errors, len(_ERROR_BACKOFF) - 1)]
                worker.errors += 1
                worker.fingerprint = None
                log.exception(
                    "reconcile of pipeline %s/%s failed; retrying in %ss", *worker.key, delay
                )
                worker.due = time.monotonic() + delay
                continue
            if ran:
                worker.due = None if requeue is None else time.monotonic() + requeue

    def _observed_jobs(self, worker: _Worker) -> list[dict[str, Any]]:
        ns, name = worker.key
        uid = (worker.body.get("metadata") or {}).get("uid")
        jobs = [
            j
            for j in self.jobs(ns, name)
            if any(
                o.get("uid") == uid for o in (j.get("metadata") or {}).get("ownerReferences", [])
            )
        ]
        seen = {j["metadata"]["name"] for j in jobs}
        now = time.monotonic()
        for job_name, (created, manifest) in list(worker.expected.items()):
            if job_name in seen or now - created > _EXPECTATION_TTL:
                del worker.expected[job_name]
            else:
                jobs.append(manifest)  # created by us, not yet seen by the watch
        return jobs

    def _fingerprint(
        self, worker: _Worker, body: Mapping[str, Any], jobs: list[dict[str, Any]]
    ) -> tuple[Any, ...]:
        """What `reconcile` reads, cheaply compared: equal fingerprints, equal decisions.

        Of the Pipeline: uid, generation (the spec), annotations and status; the
        namespace's count of Task events; per Job, what `observe_job` reads.
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
            sorted(_job_state(j) for j in jobs),
        )

    def _prepare(
        self, body: Mapping[str, Any], tasks: Mapping[str, Mapping[str, Any]]
    ) -> Prepared | None:
        """`prepare`'s result, reused while the spec (generation) and the namespace's
        Tasks (their events) stay the same; a bounded LRU: about 36 KiB a pipeline."""
        meta = body.get("metadata") or {}
        if meta.get("generation") is None:
            return None  # nothing to tell spec changes by: reconcile prepares afresh
        key = (
            meta.get("uid"),
            meta.get("generation"),
            self.task_epochs.get(meta.get("namespace") or "", 0),
        )
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = self._prepared[key] = prepare(body, tasks)
            while len(self._prepared) > _PREPARED_CACHE:
                self._prepared.popitem(last=False)
        else:
            self._prepared.move_to_end(key)
        return prepared

    async def _reconcile_once(self, worker: _Worker) -> tuple[bool, float | None]:
        """Reconcile unless nothing changed since the last time: (ran, requeue after)."""
        if not self.may_act():
            return False, None  # paused without the lease; wake_all() resumes us
        started = time.perf_counter()
        ns, _ = worker.key
        body = worker.effective_body()
        jobs = self._observed_jobs(worker)
        if (
            worker.fingerprint is not None
            and self._fingerprint(worker, body, jobs) == worker.fingerprint
        ):
            # Our own status write or a Job we created coming back through the
            # watch: the inputs are those the last reconcile left, and reconcile
            # is a fixpoint there (tests/unit/test_bench_invariants.py).
            worker.woken_by_completion = None
            self.skipped += 1
            return False, None
        tasks = self.tasks(ns)
        prepared = self._prepare(body, tasks)
        now = datetime.now(UTC)
        plan = reconcile(body, tasks, jobs, now, prepared=prepared)
        completion_seen = worker.woken_by_completion
        worker.woken_by_completion = None
        requeue = await self._apply(worker, plan, now, body)
        if plan.create and completion_seen is not None:
            self.metrics.handoff.observe(time.monotonic() - completion_seen)
        self.metrics.reconcile_duration.observe(time.perf_counter() - started)
        self.metrics.reconcile_total.labels("requeue" if requeue is not None else "success").inc()
        self._record(worker, plan)
        # The inputs this reconcile saw, with its own effects: the status it wrote
        # (as the server returned it) and the Jobs it created. Not what arrived in
        # the meantime: that must wake the next reconcile. Nothing after a failure.
        worker.fingerprint = None
        if worker.errors == 0:
            after = {**body, "status": worker.status()} if plan.status is not None else body
            created = [m for m in plan.create if m["metadata"]["name"] in worker.expected]
            worker.fingerprint = self._fingerprint(worker, after, jobs + created)
        return True, requeue

    async def _apply(
        self, worker: _Worker, plan: Plan, now: datetime, body: Mapping[str, Any]
    ) -> float | None:
        ns, name = worker.key
        failures: list[str] = []

        async def create(manifest: dict[str, Any]) -> None:
            try:
                sent = time.monotonic()
                await self.kube.create_job(ns, manifest)
                self.metrics.job_create.observe(time.monotonic() - sent)
                self.metrics.jobs_created.inc()
            except ApiError as e:
                if e.status != 409:
                    self.metrics.job_api_errors.labels("create", str(e.status)).inc()
                    failures.append(f"{manifest['metadata']['name']}: {_api_reason(e)}")
                    return
                # AlreadyExists: this attempt's Job is there (we created it before a
                # crash) -- unless the name belongs to someone else's object.
                if not await self._owned(ns, manifest):
                    self.metrics.job_api_errors.labels("create", "409").inc()
                    failures.append(
                        f"{manifest['metadata']['name']}: a Job of that name exists and "
                        "belongs to something else"
                    )
                    return
            seen = dict(manifest)
            seen["metadata"] = {
                **manifest["metadata"],
                "creationTimestamp": rfc3339(now),
            }
            worker.expected[manifest["metadata"]["name"]] = (time.monotonic(), seen)

        async def delete(job_name: str) -> None:
            try:
                await self.kube.delete_job(ns, job_name)
            except ApiError as e:
                if e.status != 404:
                    self.metrics.job_api_errors.labels("delete", str(e.status)).inc()
                    log.warning("deleting Job %s/%s failed: %s", ns, job_name, _api_reason(e))

        await asyncio.gather(*(create(m) for m in plan.create), *(delete(j) for j in plan.delete))
        if failures:
            # Don't record attempts whose Jobs don't exist; say why and try again soon.
            message = "Could not create Jobs: " + "; ".join(failures[:3])
            log.warning("pipeline %s/%s: %s", ns, name, message)
            await self._event(worker, "Warning", "JobCreateFailed", message)
            with contextlib.suppress(ApiError):
                await self.kube.patch_status(ns, name, {"message": message})
            delay = _ERROR_BACKOFF[min(worker.errors, len(_ERROR_BACKOFF) - 1)]
            worker.errors += 1
            return delay
        worker.errors = 0
        if plan.status is not None:
            # plan.status is a merge patch over the status reconcile was given.
            merged = {**(body.get("status") or {}), **plan.status}
            worker.pending = {k: v for k, v in merged.items() if v is not None}
            old_phase = (body.get("status") or {}).get("phase")
            worker.urgent |= bool(plan.events) or worker.pending.get("phase") != old_phase
            self._schedule_flush(worker)
        if plan.events:
            self._post_events(worker, plan.events)
        return plan.requeue_after

    def _post_events(self, worker: _Worker, events: list[Event]) -> None:
        """Post Events beside the worker (it never waits for them), in order per pipeline."""
        previous = worker.events_task

        async def post() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            for ev in events:
                await self._event(worker, ev.type, ev.reason, ev.message)

        task = asyncio.create_task(
            post(), name=f"events {worker.key}", context=contextvars.Context()
        )
        worker.events_task = task

        def done(_: asyncio.Task[None]) -> None:
            if worker.events_task is task:
                worker.events_task = None

        task.add_done_callback(done)

    def _schedule_flush(self, worker: _Worker) -> None:
        """Write the pending status now if urgent or due, else when it is due."""
        if worker.flush_task is not None:
            return  # a write is on its way; it schedules the next one when done
        now = time.monotonic()
        due = now if worker.urgent else worker.last_write + self.status_interval
        due = max(due, worker.retry_at)
        if now >= due:
            self._start_flush(worker)
        elif worker.flush_at is None or worker.flush_at > due:
            worker.flush_at = due

    def _start_flush(self, worker: _Worker) -> None:
        worker.flush_at = None
        if worker.flush_task is None and worker.pending is not None:
            worker.flush_task = asyncio.create_task(
                self._flush(worker), name=f"status {worker.key}", context=contextvars.Context()
            )

    async def _flush(self, worker: _Worker) -> None:
        """Write the pending status as one merge patch over the server's copy."""
        try:
            if worker.events_task is not None:
                # Events first: whoever sees the new status finds the Events that explain it.
                await asyncio.wait([worker.events_task])
            async with self.status_lane:
                await self._write_status(worker)
        finally:
            worker.flush_task = None
        if worker.pending is not None and worker.key in self.workers and not self.stopping:
            self._schedule_flush(worker)  # it changed while being written, or the write failed

    async def _write_status(self, worker: _Worker) -> None:
        pending = worker.pending  # the latest: changes made while queueing are in it
        if pending is None:
            return
        if not self.may_act():
            worker.pending = None  # not leading: whoever leads decides from the Jobs
            return
        ns, name = worker.key
        patch: dict[str, Any] = dict.fromkeys(worker.body.get("status") or {})
        patch.update(pending)
        urgent, worker.urgent = worker.urgent, False
        worker.last_write = time.monotonic()
        try:
            updated = await self.kube.patch_status(ns, name, patch)
        except ApiError as e:
            if e.status == 404:
                worker.pending = None  # the pipeline is gone; its DELETED event stops us
                return
            self._write_failed(worker, e, urgent)
            return
        except (aiohttp.ClientError, TimeoutError) as e:
            self._write_failed(worker, e, urgent)
            return
        worker.flush_errors = 0
        if worker.pending is pending:
            worker.pending = None
        if _rv(updated) >= _rv(worker.body):
            worker.body = _slim(updated)

    def _write_failed(self, worker: _Worker, error: Exception, urgent: bool) -> None:
        delay = _ERROR_BACKOFF[min(worker.flush_errors, len(_ERROR_BACKOFF) - 1)]
        worker.flush_errors += 1
        worker.urgent |= urgent
        worker.retry_at = time.monotonic() + delay
        log.warning(
            "writing the status of %s/%s failed (%s); again in %ss", *worker.key, error, delay
        )

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

    async def _event(self, worker: _Worker, type_: str, reason: str, message: str) -> None:
        try:
            async with self.status_lane:  # off the hand-off path, like status writes
                await self.kube.post_event(worker.body, type_, reason, message)
        except ApiError as e:
            log.warning("posting event %s on %s/%s failed: %s", reason, *worker.key, _api_reason(e))
        except (aiohttp.ClientError, TimeoutError) as e:
            log.warning("posting event %s on %s/%s failed: %r", reason, *worker.key, e)

    # ------------------------------------------------------------------ metrics
    def _record(self, worker: _Worker, plan: Plan) -> None:
        ns, name = worker.key
        m = self.metrics
        for t in plan.transitions:
            if t.new == "Succeeded":
                m.task_attempts.labels(ns, "succeeded").inc()
            elif t.new == "Failed" and t.old == "Running":
                m.task_attempts.labels(ns, "failed").inc()
            elif t.new == "Retrying":
                m.task_attempts.labels(ns, "retried").inc()
                m.task_retries.labels(ns, t.failure_kind or "unknown").inc()
            if t.duration_s is not None and t.new in ("Succeeded", "Failed", "Retrying"):
                result = "succeeded" if t.new == "Succeeded" else "failed"
                m.task_duration.labels(ns, result).observe(max(t.duration_s, 0.0))
        status = worker.status()
        if plan.run_finished:
            m.pipeline_runs.labels(ns, plan.run_finished).inc()
            started, finished = status.get("startedAt"), status.get("finishedAt")
            if started and finished:
                d = parse_rfc3339(finished) - parse_rfc3339(started)
                m.run_duration.labels(ns, plan.run_finished).observe(d.total_seconds())
        phase = status.get("phase")
        if phase != worker.phase:
            worker.phase = phase
            self._update_phase_gauge()
        m.pipeline_degraded.labels(ns, name).set(1 if phase == "Degraded" else 0)

    def _update_phase_gauge(self) -> None:
        counts: dict[str, int] = {
            p: 0 for p in ("Pending", "Running", "Succeeded", "Degraded", "Failed")
        }
        for w in self.workers.values():
            if w.phase in counts:
                counts[w.phase] += 1
        for phase, n in counts.items():
            self.metrics.pipelines.labels(phase).set(n)


def _slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """The Pipeline without metadata.managedFields (half its size; nobody here reads it)."""
    meta = body.get("metadata") or {}
    if "managedFields" not in meta:
        return dict(body)
    return {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


def _job_state(job: Mapping[str, Any]) -> tuple[Any, ...]:
    """The parts of a Job that `sluice.core.reconcile.observe_job` reads."""
    meta = job.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    status = job.get("status") or {}
    ended = tuple(
        (c.get("type"), c.get("reason"), c.get("message"), c.get("lastTransitionTime"))
        for c in status.get("conditions") or []
        if c.get("status") == "True" and c.get("type") in ("Complete", "Failed")
    )
    return (
        meta.get("name") or "",
        labels.get(naming.LABEL_RUN),
        labels.get(naming.LABEL_ATTEMPT),
        tuple(sorted((k, v) for k, v in annotations.items() if k.startswith("sluice.dev/"))),
        bool(meta.get("deletionTimestamp")),
        status.get("completionTime"),
        ended,
    )


def _api_reason(e: ApiError) -> str:
    import json

    try:
        return str(json.loads(e.body or "").get("message") or e.reason)
    except (TypeError, ValueError):
        return f"{e.status} {e.reason}"
