"""An in-memory world for the pure core: a Pipeline, its Tasks and Jobs, and a
clock. It applies Plans the way the shell does (create is idempotent by name)
and lets a test finish Jobs, so whole runs play out in microseconds."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sluice.core import harvest
from sluice.core.observe import observe_job
from sluice.core.pods import observe_pod
from sluice.core.reconcile import Plan, prepare, reconcile

T0 = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class World:
    pipeline: dict[str, Any]
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    now: datetime = T0
    plans: list[Plan] = field(default_factory=list)
    created: list[str] = field(default_factory=list)  # every Job name ever created, in order
    pods: dict[str, list[Any]] = field(default_factory=dict)
    """The pod view: pods by Job name (what the shell's pod watch would show)."""
    job_events: dict[str, list[Any]] = field(default_factory=dict)
    stuck_after: float = 30.0
    messages: dict[str, str | None] = field(default_factory=dict)
    """The termination message of each succeeded Job's pod (its results); a succeeded Job
    absent from it has no pod any more."""
    pod_reads: list[str] = field(default_factory=list)
    """Jobs whose pods were read, as the shell reads them (``shell.podreads``)."""

    @classmethod
    def of(
        cls,
        spec: dict[str, Any],
        tasks: dict[str, dict[str, Any]] | None = None,
        name: str = "p",
        annotations: dict[str, str] | None = None,
    ) -> World:
        pipeline = {
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "Pipeline",
            "metadata": {
                "name": name,
                "namespace": "ns",
                "uid": "uid-1",
                "generation": 1,
                "annotations": dict(annotations or {}),
            },
            "spec": spec,
        }
        return cls(pipeline, {k: {"spec": v} for k, v in (tasks or {}).items()})

    # ------------------------------------------------------------------ driving
    def _pods(self) -> dict[str, Any]:
        """What the shell's targeted reads give: the pods of the Jobs the core wants."""
        prepared = prepare(self.pipeline, self.tasks)
        views = [v for v in map(observe_job, self.jobs.values()) if v is not None]
        out = {}
        for name in harvest.wanted(self.status, views, prepared.declared):
            self.pod_reads.append(name)
            pods = []
            if name in self.messages:
                state = {"terminated": {"exitCode": 0, "message": self.messages[name]}}
                if self.messages[name] is None:
                    del state["terminated"]["message"]
                pods.append(
                    observe_pod(
                        {
                            "metadata": {
                                "name": f"{name}-x",
                                "namespace": "ns",
                                "labels": {"job-name": name},
                            },
                            "status": {
                                "phase": "Succeeded",
                                "containerStatuses": [{"name": "main", "state": state}],
                            },
                        }
                    )
                )
            out[name] = pods
        return out

    def reconcile(self) -> Plan:
        view = {  # raw pod dicts (as the watch shows them) or PodViews
            job: [observe_pod(p) if isinstance(p, dict) else p for p in ps]
            for job, ps in self.pods.items()
        }
        plan = reconcile(
            self.pipeline,
            self.tasks,
            list(self.jobs.values()),
            self.now,
            pods={**self._pods(), **view},
            job_events=self.job_events,
            stuck_after=self.stuck_after,
        )
        self.plans.append(plan)
        for manifest in plan.create:
            job_name = manifest["metadata"]["name"]
            if job_name in self.jobs:
                continue  # AlreadyExists: the idempotency the names buy
            job = copy.deepcopy(manifest)
            job["metadata"]["creationTimestamp"] = ts(self.now)
            job["status"] = {"active": 1}
            self.jobs[job_name] = job
            self.created.append(job_name)
        for job_name in plan.delete:
            self.jobs.pop(job_name, None)
        if plan.status is not None:
            merged = {**(self.pipeline.get("status") or {}), **plan.status}
            self.pipeline["status"] = {k: v for k, v in merged.items() if v is not None}
        return plan

    def settle(self, limit: int = 50) -> Plan:
        """Reconcile until a reconcile changes nothing."""
        for _ in range(limit):
            plan = self.reconcile()
            if not plan.create and not plan.delete and plan.status is None:
                return plan
        raise AssertionError("reconcile did not settle")

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    # ------------------------------------------------------------------ jobs
    def job_of(self, task: str, attempt: int | None = None) -> dict[str, Any]:
        mine = [
            j
            for j in self.jobs.values()
            if j["metadata"]["annotations"]["sluice.dev/task-name"] == task
        ]
        if attempt is not None:
            mine = [
                j for j in mine if j["metadata"]["labels"]["sluice.dev/attempt"] == str(attempt)
            ]
        assert mine, f"no job for {task}"
        return max(
            mine,
            key=lambda j: (
                int(j["metadata"]["labels"]["sluice.dev/run"]),
                int(j["metadata"]["labels"]["sluice.dev/attempt"]),
            ),
        )

    def active_tasks(self) -> set[str]:
        return {
            j["metadata"]["annotations"]["sluice.dev/task-name"]
            for j in self.jobs.values()
            if not j["status"].get("conditions")
        }

    def succeed(self, task: str, results: dict[str, Any] | str | None = None) -> None:
        """Finish ``task``'s Job; ``results`` (a dict as JSON, or the raw message) is what
        its main container wrote to its termination message."""
        job = self.job_of(task)
        if results is not None:
            self.messages[job["metadata"]["name"]] = (
                results if isinstance(results, str) else json.dumps(results)
            )
        job["status"] = {
            "succeeded": 1,
            "completionTime": ts(self.now),
            "conditions": [
                {"type": "Complete", "status": "True", "lastTransitionTime": ts(self.now)}
            ],
        }

    def pod_succeeds(self, task: str) -> None:
        """The step's pod has succeeded; its Job's status is not updated yet."""
        job = self.job_of(task)
        name = job["metadata"]["name"]
        self.pods[name] = [
            {
                "metadata": {
                    "name": f"{name}-x1",
                    "namespace": "ns",
                    "uid": f"pod-{name}",
                    "labels": {"batch.kubernetes.io/job-name": name},
                    "annotations": job["spec"]["template"]["metadata"].get("annotations") or {},
                },
                "status": {
                    "phase": "Succeeded",
                    "containerStatuses": [
                        {
                            "name": "main",
                            "state": {"terminated": {"exitCode": 0, "finishedAt": ts(self.now)}},
                        }
                    ],
                },
            }
        ]

    def fail(
        self,
        task: str,
        reason: str = "PodFailurePolicy",
        message: str = "Container main for pod ns/x failed with exit code 3 matching "
        "FailJob rule at index 1",
    ) -> None:
        job = self.job_of(task)
        job["status"] = {
            "failed": 1,
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": ts(self.now),
                }
            ],
        }

    # ------------------------------------------------------------------ status
    @property
    def status(self) -> dict[str, Any]:
        return self.pipeline.get("status") or {}

    @property
    def phase(self) -> str | None:
        return self.status.get("phase")

    def task_status(self, task: str) -> dict[str, Any]:
        return next(t for t in self.status.get("tasks", []) if t["name"] == task)

    def task_phase(self, task: str) -> str:
        return self.task_status(task)["phase"]

    def condition(self, type_: str) -> dict[str, Any]:
        return next(c for c in self.status.get("conditions", []) if c["type"] == type_)

    def annotate(self, key: str, value: str) -> None:
        self.pipeline["metadata"]["annotations"][key] = value

    def edit_spec(self, **changes: Any) -> None:
        self.pipeline["spec"].update(changes)
        self.pipeline["metadata"]["generation"] += 1
