"""Prometheus metrics of the operator (prometheus-client objects, nothing else).

Label cardinality is bounded: namespaces and results, never run numbers or Job
names. The per-pipeline series are ``sluice_pipeline_degraded``, which the
spec asks for so an alert can name the pipeline, and
``sluice_step_last_duration_seconds`` (at most two a step: its last succeeded
and its last failed attempt), so a slower step can be told; they are removed
when the pipeline (or the step) is deleted. They and ``sluice_pipelines`` are
exported by the leader only (``sluice_leader`` is 1 there, 0 on a standby):
see sluice.shell.recorder.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = [
    "DURATION_BUCKETS",
    "HANDOFF_BUCKETS",
    "LAG_BUCKETS",
    "LastDurations",
    "Metrics",
]

HANDOFF_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
LAG_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)
RECONCILE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class LastDurations(Collector):
    """``sluice_step_last_duration_seconds{namespace,pipeline,step,result}``: a gauge,
    exported as one, kept as plain floats by pipeline.

    A ``Gauge`` child costs about 750 bytes (a lock, a value object, its label tuple and
    dicts): 7.5 MiB at 1,000 pipelines of 10 steps. Here a series is a float in its
    pipeline's dict (about 150 bytes), and a pipeline's series go in one ``pop``. Written
    from the event loop, read by the scrape's thread: one lock.
    """

    NAME = "sluice_step_last_duration_seconds"
    HELP = (
        "Duration of the last attempt of a pipeline's step that ended with this result "
        "(succeeded, failed: a retried attempt failed too), from its Job's creation to "
        "its end; leader only, removed with the step or the pipeline."
    )
    LABELS = ("namespace", "pipeline", "step", "result")

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        self._series: dict[tuple[str, str], dict[tuple[str, str], float]] = {}
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def set(self, pipeline: tuple[str, str], step: str, result: str, seconds: float) -> None:
        with self._lock:
            self._series.setdefault(pipeline, {})[(step, result)] = seconds

    def steps(self, pipeline: tuple[str, str]) -> frozenset[tuple[str, str]]:
        """The (step, result) series of one pipeline."""
        with self._lock:
            return frozenset(self._series.get(pipeline, ()))

    def remove(self, pipeline: tuple[str, str], step: str, result: str) -> None:
        with self._lock:
            series = self._series.get(pipeline)
            if series is not None:
                series.pop((step, result), None)
                if not series:
                    del self._series[pipeline]

    def forget(self, pipeline: tuple[str, str]) -> None:
        """Every series of one pipeline."""
        with self._lock:
            self._series.pop(pipeline, None)

    def clear(self) -> None:
        with self._lock:
            self._series.clear()

    def describe(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(self.NAME, self.HELP, labels=self.LABELS)]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=self.LABELS)
        with self._lock:
            rows = [
                (ns, name, step, result, value)
                for (ns, name), series in self._series.items()
                for (step, result), value in series.items()
            ]
        for ns, name, step, result, value in rows:
            family.add_metric((ns, name, step, result), value)
        yield family


class Metrics:
    """All of Sluice's metrics, registered on one registry (a fresh one in tests)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        r = registry
        self.pipeline_runs = Counter(
            "sluice_pipeline_runs_total",
            "Pipeline runs, each counted once, by the result it first settled at "
            "(Succeeded, Failed, Degraded); a later success after a fix is a recovery.",
            ["namespace", "result"],
            registry=r,
        )
        self.pipeline_recoveries = Counter(
            "sluice_pipeline_recoveries_total",
            "Runs counted Degraded in sluice_pipeline_runs_total that later succeeded.",
            ["namespace"],
            registry=r,
        )
        self.pipelines = Gauge(
            "sluice_pipelines", "Pipelines known to the operator, by phase.", ["phase"], registry=r
        )
        self.pipeline_degraded = Gauge(
            "sluice_pipeline_degraded",
            "1 while the pipeline is Degraded (a task failed past its retry budget), else 0.",
            ["namespace", "pipeline"],
            registry=r,
        )
        self.task_attempts = Counter(
            "sluice_task_attempts_total",
            "Task attempts that ended, by result (succeeded, failed, retried).",
            ["namespace", "result"],
            registry=r,
        )
        self.task_retries = Counter(
            "sluice_task_retries_total",
            "Retries scheduled after a failed attempt, by failure kind.",
            ["namespace", "kind"],
            registry=r,
        )
        self.task_duration = Histogram(
            "sluice_task_duration_seconds",
            "Duration of task attempts, from Job creation to its end.",
            ["namespace", "result"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.step_last_duration = LastDurations(registry=r)
        self.run_duration = Histogram(
            "sluice_pipeline_run_duration_seconds",
            "Duration of pipeline runs, from start to the result they first settled at "
            "(one observation per run, as sluice_pipeline_runs_total).",
            ["namespace", "result"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.job_api_errors = Counter(
            "sluice_job_api_errors_total",
            "Failed Job API calls, by operation (create, delete) and HTTP status.",
            ["operation", "code"],
            registry=r,
        )
        self.reconcile_total = Counter(
            "sluice_reconcile_total",
            "Reconciles of pipelines, by result (success, error, requeue).",
            ["result"],
            registry=r,
        )
        self.reconcile_errors = Counter(
            "sluice_reconcile_errors_total", "Reconciles that raised an error.", registry=r
        )
        self.reconcile_duration = Histogram(
            "sluice_reconcile_time_seconds",
            "Time per reconcile, including the API calls it makes.",
            buckets=RECONCILE_BUCKETS,
            registry=r,
        )
        self.handoff = Histogram(
            "sluice_handoff_latency_seconds",
            "From the operator seeing an upstream Job complete to the downstream Job created.",
            buckets=HANDOFF_BUCKETS,
            registry=r,
        )
        self.job_create = Histogram(
            "sluice_job_create_seconds",
            "Round trip of a Job create to the API server, waiting for a pooled connection "
            "included: when it is most of sluice_handoff_latency_seconds, hand-offs wait "
            "for the API server, not for the operator's decisions.",
            buckets=HANDOFF_BUCKETS,
            registry=r,
        )
        self.reconcile_skipped = Counter(
            "sluice_reconcile_skipped_total",
            "Wake-ups of a pipeline's worker whose inputs were unchanged since its last "
            "reconcile (its own status write or Job creation coming back): no reconcile ran.",
            registry=r,
        )
        self.job_relists = Counter(
            "sluice_job_relists_total",
            "Complete lists of a namespace's Jobs: one per namespace at start, then one "
            "after each watch that was too old to resume (410 Gone).",
            registry=r,
        )
        self.steps_stuck = Gauge(
            "sluice_steps_stuck",
            "Running steps whose pod has not started past --stuck-after, by the reason "
            "(ImagePullBackOff, Unschedulable, FailedCreate, ...).",
            ["namespace", "reason"],
            registry=r,
        )
        self.stuck_reads = Counter(
            "sluice_stuck_reads_total",
            "API requests made to diagnose stuck steps (a Job's pods, or its Events).",
            registry=r,
        )
        self.leader = Gauge(
            "sluice_leader",
            "1 while this replica holds the leader election Lease (and so acts and exports "
            "the per-pipeline and phase gauges), else 0.",
            registry=r,
        )
        self.scheduled_runs = Counter(
            "sluice_scheduled_runs_total",
            "Ticks of pipeline schedules, by outcome: started (a run), skipped (Forbid: the "
            "previous run was running) or missed (not run: past startingDeadlineSeconds, or "
            "older than the one tick caught up).",
            ["namespace", "outcome"],
            registry=r,
        )
        self.schedule_lag = Histogram(
            "sluice_schedule_lag_seconds",
            "From a schedule's tick to the start of its run (a catch-up's includes the outage).",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.cache_hits = Counter(
            "sluice_task_cache_hits_total",
            "Steps not run because a cache entry of an earlier run matched their inputs.",
            ["namespace"],
            registry=r,
        )
        self.cache_misses = Counter(
            "sluice_task_cache_misses_total",
            "Steps with an enabled cache that found no entry and ran.",
            ["namespace"],
            registry=r,
        )
        self.jobs_created = Counter(
            "sluice_jobs_created_total", "Jobs created by the operator.", registry=r
        )
        # Label sets known in advance start at zero: a labelled child is born
        # at its first value otherwise, and increase() over a window that holds
        # its first sample only counts nothing. (Sets with a namespace or an
        # HTTP code cannot be known; the chart's alerts count a series born in
        # their window from zero instead.)
        for result in ("success", "error", "requeue"):
            self.reconcile_total.labels(result)
