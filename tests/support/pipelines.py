"""Pipelines and Tasks on the real API server, for the end-to-end tests."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from support.wait import wait_for

GROUP, VERSION = "sluice.dev", "v1alpha1"


class Sluice:
    """Apply, read and wait on Sluice objects in one namespace."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.ns = namespace
        self.custom = client.CustomObjectsApi(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)

    # ------------------------------------------------------------------ objects
    def task(self, name: str, spec: dict[str, Any]) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Task",
            "metadata": {"name": name},
            "spec": spec,
        }
        try:
            self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, "tasks", body)
        except client.ApiException as e:
            if e.status != 409:
                raise
            current = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.ns, "tasks", name
            )
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            self.custom.replace_namespaced_custom_object(
                GROUP, VERSION, self.ns, "tasks", name, body
            )

    def pipeline(
        self, name: str, spec: dict[str, Any], annotations: dict[str, str] | None = None
    ) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Pipeline",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": spec,
        }
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.ns, "pipelines", body
        )
        return result

    def get(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.ns, "pipelines", name
        )
        return result

    def patch(self, name: str, patch: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, "pipelines", name, patch
        )

    def annotate(self, name: str, key: str, value: str) -> None:
        self.patch(name, {"metadata": {"annotations": {key: value}}})

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.ns, "pipelines", name)

    # ------------------------------------------------------------------ status
    def status(self, name: str) -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def task_status(self, name: str, task: str) -> dict[str, Any]:
        return next((t for t in self.status(name).get("tasks", []) if t["name"] == task), {})

    def wait_phase(self, name: str, *phases: str, timeout: float = 90) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            st = self.status(name)
            return st if st.get("phase") in phases else None

        try:
            return wait_for(
                probe, timeout=timeout, what=f"pipeline {name} to be {'/'.join(phases)}"
            )
        except AssertionError as e:
            raise AssertionError(f"{e}; status is {self.status(name)}") from None

    def wait_task(self, name: str, task: str, *phases: str, timeout: float = 90) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            ts = self.task_status(name, task)
            return ts if ts.get("phase") in phases else None

        return wait_for(probe, timeout=timeout, what=f"task {task} of {name} to be {phases}")

    # ------------------------------------------------------------------ jobs
    def jobs(self, pipeline: str | None = None) -> list[Any]:
        selector = (
            f"sluice.dev/pipeline={pipeline}" if pipeline else "app.kubernetes.io/managed-by=sluice"
        )
        return list(self.batch.list_namespaced_job(self.ns, label_selector=selector).items)

    def events(self, pipeline: str) -> list[Any]:
        return [
            e
            for e in self.core.list_namespaced_event(self.ns).items
            if e.involved_object.name == pipeline and e.involved_object.kind == "Pipeline"
        ]


def sim(
    outcome: str | None = None, exit_code: int | None = None, duration: str | None = None
) -> dict[str, Any]:
    """A podTemplate using the local cluster's simulation contract (sim.sluice.dev/*)."""
    labels, annotations = {}, {}
    if outcome:
        labels["sim.sluice.dev/outcome"] = outcome
    if exit_code is not None:
        annotations["sim.sluice.dev/exit-code"] = str(exit_code)
    if duration:
        annotations["sim.sluice.dev/duration"] = duration
    return {"metadata": {"labels": labels, "annotations": annotations}}
