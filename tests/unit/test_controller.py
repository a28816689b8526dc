"""The controller's worker logic (sluice.shell.controller) against a fake API:
it acts only while leading, records what it creates, and a refused Job create
reaches the status and an Event through the one status writer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry

from sluice.metrics import Metrics
from sluice.shell.controller import Controller, not_older
from sluice.shell.kube import ApiError

PIPELINE = {
    "apiVersion": "sluice.dev/v1alpha1",
    "kind": "Pipeline",
    "metadata": {
        "name": "p",
        "namespace": "ns",
        "uid": "uid-1",
        "generation": 1,
        "resourceVersion": "5",
    },
    "spec": {"tasks": [{"name": "a", "task": {"image": "busybox:1.36"}}]},
}


class FakeKube:
    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self.events: list[tuple[str, str]] = []
        self.refuse: ApiError | None = None

    async def list_jobs(
        self, namespace: str, selector: str, limit: int = 500, continue_: str | None = None
    ) -> dict[str, Any]:
        return {"metadata": {"resourceVersion": "1"}, "items": []}

    async def watch_jobs(
        self, namespace: str, selector: str, rv: str, idle_timeout: float
    ) -> AsyncIterator[dict[str, Any]]:
        await asyncio.sleep(3600)
        yield {}

    async def list_pods(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"metadata": {"resourceVersion": "1"}, "items": []}

    async def watch_pods(self, *args: Any, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        await asyncio.sleep(3600)
        yield {}

    async def create_job(self, namespace: str, manifest: dict[str, Any]) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.created.append(manifest)

    async def delete_job(self, namespace: str, name: str) -> None:
        pass

    async def patch_status(
        self, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        self.statuses.append(patch)
        status = {k: v for k, v in patch.items() if v is not None}
        return {
            **PIPELINE,
            "metadata": {**PIPELINE["metadata"], "resourceVersion": "6"},
            "status": status,
        }

    async def post_event(
        self, pipeline: dict[str, Any], type_: str, reason: str, message: str
    ) -> None:
        self.events.append((reason, message))


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def scenario(test: Callable[[FakeKube, Controller], Awaitable[None]]) -> None:
    async def run() -> None:
        kube = FakeKube()
        controller = Controller(
            kube,  # type: ignore[arg-type]
            tasks=lambda ns: {},
            metrics=Metrics(CollectorRegistry()),
            status_interval=0,
        )
        try:
            await test(kube, controller)
        finally:
            await controller.stop()

    asyncio.run(run())


def test_a_standby_decides_nothing_and_acts_at_once_when_it_leads() -> None:
    async def test(kube: FakeKube, controller: Controller) -> None:
        controller.pipeline_event("ADDED", PIPELINE)
        await asyncio.sleep(0.1)
        assert kube.created == [] and kube.statuses == [] and kube.events == []
        controller.lead(True)
        await until(lambda: len(kube.created) == 1, "the first Job")
        assert kube.created[0]["metadata"]["annotations"]["sluice.dev/task-name"] == "a"
        await until(lambda: kube.statuses != [], "a status")
        assert controller.metrics.leader._value.get() == 1
        # The Job not seen by the watch yet counts as existing: no second create.
        controller.wake(("ns", "p"))
        await asyncio.sleep(0.1)
        assert len(kube.created) == 1
        assert controller.expectations.pending(("ns", "p")) == {kube.created[0]["metadata"]["name"]}

    scenario(test)


def test_a_create_refused_for_its_spec_fails_the_step_at_once_with_the_servers_words() -> None:
    async def test(kube: FakeKube, controller: Controller) -> None:
        words = 'Job.batch "p-a" is invalid: strict decoding error: unknown field "spec.x"'
        kube.refuse = ApiError(422, "Unprocessable Entity", json.dumps({"message": words}))
        controller.lead(True)
        controller.pipeline_event("ADDED", PIPELINE)
        await until(lambda: any(s.get("phase") == "Degraded" for s in kube.statuses), "Degraded")
        status = next(s for s in kube.statuses if s.get("phase") == "Degraded")
        (step,) = status["tasks"]
        assert (step["phase"], step["reason"], step["message"]) == ("Failed", "JobRejected", words)
        assert step["attempts"] == 1  # not retried: the spec is the user's to fix
        reasons = [r for r, _ in kube.events]
        assert reasons.index("TaskFailed") < reasons.index("Degraded")
        assert "JobCreateFailed" not in reasons
        failed = next(m for r, m in kube.events if r == "TaskFailed")
        assert words in failed and "not retryable" in failed
        assert controller.metrics.job_api_errors.labels("create", "422")._value.get() == 1

    scenario(test)


def test_a_create_refused_for_another_reason_is_said_and_retried() -> None:
    async def test(kube: FakeKube, controller: Controller) -> None:
        words = 'jobs.batch "p-a" is forbidden: exceeded quota: q, requested: count/jobs.batch=1'
        kube.refuse = ApiError(403, "Forbidden", json.dumps({"message": words}))
        controller.lead(True)
        controller.pipeline_event("ADDED", PIPELINE)
        await until(lambda: any("message" in s for s in kube.statuses), "the message")
        message = next(s["message"] for s in kube.statuses if "message" in s)
        assert words in message and message.startswith("Could not create Jobs: ")
        assert kube.events[0] == ("JobCreateFailed", message)
        assert controller.metrics.job_api_errors.labels("create", "403")._value.get() == 1
        # Issue 19: a phase, a progress and a condition that names the refusal.
        status = next(s for s in kube.statuses if "message" in s)
        assert (status["phase"], status["progress"]) == ("Pending", "0/1")
        (cond,) = [c for c in status["conditions"] if c["type"] == "Progressing"]
        assert (cond["status"], cond["reason"]) == ("False", "JobCreateFailed")
        assert words in cond["message"]

    scenario(test)


def test_a_deleted_pipeline_leaves_no_prepared_spec_behind() -> None:
    async def test(kube: FakeKube, controller: Controller) -> None:
        controller.lead(True)
        controller.pipeline_event("ADDED", PIPELINE)
        await until(lambda: len(kube.created) == 1, "the first Job")
        assert any(k[0] == "uid-1" for k in controller._prepared)
        controller.pipeline_event("DELETED", PIPELINE)
        assert not any(k[0] == "uid-1" for k in controller._prepared)
        assert ("ns", "p") not in controller.workers

    scenario(test)


def test_losing_the_lease_clears_the_per_pipeline_gauges() -> None:
    async def test(kube: FakeKube, controller: Controller) -> None:
        controller.lead(True)
        controller.pipeline_event("ADDED", PIPELINE)
        await until(lambda: controller.recorder.phases != {}, "a phase")
        assert controller.metrics.pipeline_degraded.labels("ns", "p")._value.get() == 0
        controller.lead(False)
        samples = [s for m in controller.metrics.pipeline_degraded.collect() for s in m.samples]
        phases = [s for m in controller.metrics.pipelines.collect() for s in m.samples]
        assert samples == [] and phases == []
        assert controller.metrics.leader._value.get() == 0

    scenario(test)


def test_resource_versions_are_ordered_as_numbers_and_otherwise_the_newest_wins() -> None:
    def rv(v: str) -> dict[str, Any]:
        return {"metadata": {"resourceVersion": v}}

    assert not_older(rv("10"), rv("9")) and not not_older(rv("9"), rv("10"))
    assert not_older(rv("9"), rv("9"))
    assert not_older(rv("abc"), rv("10"))  # opaque: a different copy is taken
