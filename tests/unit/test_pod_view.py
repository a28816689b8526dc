"""The pod view (sluice.shell.pods): the pods of Sluice's Jobs, listed and watched
per namespace with the Job index's own loop (shell/listwatch.py), kept by Job
name; a pod that newly succeeded wakes its pipeline as a completion, and the
controller hands off on it before the Job's Complete, with the hand-off clock
started at the pod's event."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CollectorRegistry

from sluice.core.observe import observe_job
from sluice.metrics import Metrics
from sluice.shell.controller import Controller
from sluice.shell.jobs import SELECTOR
from sluice.shell.kube import ApiError
from sluice.shell.pods import PodIndex


def pod(
    name: str, job: str, phase: str = "Running", pipeline: str | None = "p", ns: str = "ns"
) -> dict[str, Any]:
    annotations = {"sluice.dev/pipeline-name": pipeline} if pipeline else {}
    return {
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": f"uid-{name}",
            "resourceVersion": "11",
            "labels": {"batch.kubernetes.io/job-name": job},
            "annotations": annotations,
            "managedFields": [{"manager": "big"}],
        },
        "spec": {"containers": [{"name": "main", "image": "x"}]},
        "status": {"phase": phase},
    }


def jobview(name: str) -> Any:
    view = observe_job(
        {
            "metadata": {
                "name": name,
                "labels": {"sluice.dev/run": "1"},
                "annotations": {"sluice.dev/task-name": "a"},
            }
        }
    )
    assert view is not None
    return view


class Stream:
    """A fake list and watch: the list's pages, then watch events pushed by the test."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self.lists = 0
        self.selectors: set[str] = set()

    async def list(
        self,
        namespace: str,
        selector: str,
        limit: int = 500,
        continue_: str | None = None,
        fields: str = "",
    ) -> dict[str, Any]:
        self.lists += 1
        self.selectors.add(selector)
        self.fields = fields
        return {"metadata": {"resourceVersion": "10"}, "items": list(self.items)}

    async def watch(
        self, namespace: str, selector: str, rv: str, idle_timeout: float, fields: str = ""
    ) -> AsyncIterator[dict[str, Any]]:
        while True:
            event = await self.events.get()
            if isinstance(event, Exception):
                raise event
            yield event


class PodKube:
    def __init__(self, pods: list[dict[str, Any]]) -> None:
        self.pod_stream = Stream(pods)
        self.list_pods = self.pod_stream.list
        self.watch_pods = self.pod_stream.watch


async def until(condition: Any, what: str) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_pods_are_kept_by_job_and_only_a_new_success_wakes_as_a_completion() -> None:
    async def scenario() -> None:
        kube = PodKube([pod("a-1", "job-a"), pod("old-1", "job-old", pipeline=None)])
        changes: list[tuple[tuple[str, str], bool]] = []
        index = PodIndex(
            kube,  # type: ignore[arg-type]
            lambda key, done: changes.append((key, done)),
            lambda ns, job: "q" if job == "job-old" else None,  # the Job index's answer
        )
        await asyncio.wait_for(index.synced("ns").wait(), 1)
        assert kube.pod_stream.selectors == {SELECTOR}
        assert kube.pod_stream.fields == "status.phase=Succeeded"  # by default
        assert {(("ns", "p"), False), (("ns", "q"), False)} <= set(changes)
        (a,) = index.pods("ns", [jobview("job-a"), jobview("job-b")])["job-a"]
        assert (a.name, a.job, a.pipeline, a.phase) == ("a-1", "job-a", "p", "Running")
        assert "job-b" not in index.pods("ns", [jobview("job-b")])  # nothing known
        changes.clear()
        events = kube.pod_stream.events
        await events.put({"type": "MODIFIED", "object": pod("a-1", "job-a", "Running")})
        await events.put({"type": "MODIFIED", "object": pod("a-1", "job-a", "Succeeded")})
        await events.put({"type": "MODIFIED", "object": pod("a-1", "job-a", "Succeeded")})
        await events.put({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}})
        await events.put(
            {"type": "MODIFIED", "object": pod("old-1", "job-old", "Succeeded", pipeline=None)}
        )
        await until(lambda: len(changes) == 2, "two wake-ups")
        assert changes == [(("ns", "p"), True), (("ns", "q"), True)]
        assert index.pods("ns", [jobview("job-a")])["job-a"][0].succeeded
        await events.put({"type": "DELETED", "object": pod("a-1", "job-a", "Succeeded")})
        await until(lambda: index.pods("ns", [jobview("job-a")]) == {}, "the pod gone")
        index.release("ns")
        assert index.pods("ns", [jobview("job-old")]) == {}
        await index.stop()

    asyncio.run(scenario())


def test_a_gone_pod_watch_relists_and_swaps_at_once() -> None:
    async def scenario() -> None:
        kube = PodKube([pod("a-1", "job-a"), pod("b-1", "job-b")])
        index = PodIndex(kube, lambda key, done: None, lambda ns, job: None)  # type: ignore[arg-type]
        await asyncio.wait_for(index.synced("ns").wait(), 1)
        kube.pod_stream.items = [pod("b-1", "job-b", "Succeeded")]
        await kube.pod_stream.events.put(ApiError(410, "Gone"))
        await until(lambda: kube.pod_stream.lists == 2, "a relist")
        await until(lambda: "job-a" not in index.pods("ns", [jobview("job-a")]), "a swapped")
        assert index.pods("ns", [jobview("job-b")])["job-b"][0].succeeded
        await index.stop()

    asyncio.run(scenario())


# --------------------------------------------------------------------------- the controller

PIPELINE = {
    "apiVersion": "sluice.dev/v1alpha1",
    "kind": "Pipeline",
    "metadata": {"name": "p", "namespace": "ns", "uid": "uid-1", "generation": 1},
    "spec": {
        "tasks": [
            {"name": "a", "task": {"image": "busybox:1.36"}},
            {"name": "b", "task": {"image": "busybox:1.36"}, "dependsOn": ["a"]},
        ]
    },
}


class ClusterKube(PodKube):
    """Jobs that stay Active (no Job controller here) and their pods."""

    def __init__(self) -> None:
        super().__init__([])
        self.job_stream = Stream([])
        self.list_jobs = self.job_stream.list
        self.watch_jobs = self.job_stream.watch
        self.created: list[dict[str, Any]] = []

    async def create_job(self, namespace: str, manifest: dict[str, Any]) -> None:
        self.created.append(manifest)
        job = {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": "20"}}
        await self.job_stream.events.put({"type": "ADDED", "object": job})

    async def patch_status(
        self, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        return {**PIPELINE, "status": {k: v for k, v in patch.items() if v is not None}}

    async def post_event(self, *args: Any) -> None:
        pass

    async def delete_job(self, namespace: str, name: str) -> None:
        pass


def test_a_succeeded_pod_hands_off_before_the_job_completes_timed_from_its_event() -> None:
    async def scenario() -> None:
        kube = ClusterKube()
        slow = {"on": False}

        def tasks(ns: str) -> dict[str, Any]:
            if slow["on"]:
                time.sleep(0.2)  # a busy worker: the clock has already started
            return {}

        controller = Controller(
            kube,  # type: ignore[arg-type]
            tasks=tasks,
            metrics=Metrics(CollectorRegistry()),
            status_interval=0,
        )
        try:
            controller.lead(True)
            controller.pipeline_event("ADDED", PIPELINE)
            await until(lambda: len(kube.created) == 1, "the first Job")
            job = kube.created[0]
            name = job["metadata"]["name"]
            template = job["spec"]["template"]["metadata"]
            await until(lambda: controller.job_index.jobs("ns", "p") != [], "the Job seen")
            slow["on"] = True
            succeeded = pod(f"{name}-x", name, "Succeeded", pipeline=None)
            succeeded["metadata"]["annotations"] = template["annotations"]
            await kube.pod_stream.events.put({"type": "MODIFIED", "object": succeeded})
            await until(lambda: len(kube.created) == 2, "the second Job, on the pod's success")
            assert kube.created[1]["metadata"]["annotations"]["sluice.dev/task-name"] == "b"
            handoff = controller.metrics.handoff

            def samples() -> dict[str, float]:
                return {s.name: s.value for m in handoff.collect() for s in m.samples}

            await until(lambda: samples()["sluice_handoff_latency_seconds_count"] == 1, "timed")
            assert samples()["sluice_handoff_latency_seconds_sum"] >= 0.2
        finally:
            await controller.stop()

    asyncio.run(scenario())
