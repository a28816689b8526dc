"""Results wired into the reconciler: implicit dependencies, reading results from the pod,
InvalidResults/ResultsLost/ResultsTooLarge, substitution into the next Job, pipeline
results, and validation of references."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry

from sluice.api import parse_pipeline_spec
from sluice.core import results, validation
from sluice.core.jobspec import CONTAINER_NAME, build_job, resolve_step
from sluice.core.observe import observe_job
from sluice.core.reconcile import prepare, reconcile
from sluice.metrics import Metrics
from sluice.shell.kube import ApiError
from sluice.shell.podreads import PodReads
from sluice.shell.recorder import Recorder
from support.world import World

IMG = "busybox:1.36"


def _spec(**extra: Any) -> dict[str, Any]:
    return {
        "tasks": [
            {
                "name": "train",
                "task": {"image": IMG, "results": [{"name": "model-uri"}, {"name": "auc"}]},
            },
            {
                "name": "register",
                "params": [{"name": "model", "value": "$(tasks.train.results.model-uri)"}],
                "task": {
                    "image": IMG,
                    "params": [{"name": "model"}],
                    "args": ["--model", "$(params.model)", "--auc=$(tasks.train.results.auc)"],
                    "env": [{"name": "AUC", "value": "$(tasks.train.results.auc)"}],
                },
            },
        ],
        **extra,
    }


def _main(job: dict[str, Any]) -> dict[str, Any]:
    containers = job["spec"]["template"]["spec"]["containers"]
    found: dict[str, Any] = next(c for c in containers if c["name"] == CONTAINER_NAME)
    return found


def test_a_reference_makes_the_step_wait_for_its_producer_and_gets_its_results() -> None:
    w = World.of(_spec(results=[{"name": "model", "value": "$(tasks.train.results.model-uri)"}]))
    w.reconcile()
    assert w.active_tasks() == {"train"}  # register waits: it refers to train's results
    train = _main(w.job_of("train"))
    assert train["terminationMessagePath"] == "/dev/termination-log"
    assert {"name": "SLUICE_RESULTS_PATH", "value": "/dev/termination-log"} in train["env"]
    w.succeed("train", {"model-uri": "s3://m/$(HOME)", "auc": "0.91"})
    w.settle()
    assert w.task_status("train")["results"] == {"model-uri": "s3://m/$(HOME)", "auc": "0.91"}
    register = _main(w.job_of("register"))
    # $ doubled: the kubelet gives the container the result exactly as written
    assert register["args"] == ["--model", "s3://m/$$(HOME)", "--auc=0.91"]
    assert register["env"] == [{"name": "AUC", "value": "0.91"}]
    assert "terminationMessagePath" not in register
    w.succeed("register")
    w.settle()
    assert w.phase == "Succeeded"
    assert w.status["results"] == {"model": "s3://m/$(HOME)"}
    assert w.pod_reads == [w.job_of("train")["metadata"]["name"]]  # once, for train only


def test_invalid_results_fail_the_attempt_and_are_retried_then_the_step_fails() -> None:
    spec = _spec()
    spec["tasks"][0]["retry"] = {"limit": 1, "backoff": {"initialSeconds": 1}}
    w = World.of(spec)
    w.reconcile()
    w.succeed("train", {"model-uri": "s3://m"})  # auc missing
    plan = w.reconcile()
    ts = w.task_status("train")
    assert ts["phase"] == "Retrying" and ts["reason"] == results.INVALID_RESULTS
    assert '"auc" missing' in ts["message"]
    assert any(e.reason == "TaskRetrying" and "auc" in e.message for e in plan.events)
    w.advance(2)
    w.reconcile()
    w.succeed("train", "not json")
    w.settle()
    assert w.task_phase("train") == "Failed"
    assert w.task_phase("register") == "Blocked"
    assert w.phase == "Degraded"


def test_a_succeeded_job_whose_pod_is_gone_counts_as_a_failed_attempt() -> None:
    w = World.of(_spec())
    w.reconcile()
    w.succeed("train")  # no pod left to read
    w.reconcile()
    ts = w.task_status("train")
    assert ts["reason"] == "ResultsLost" and "gone" in ts["message"]
    assert not ts.get("results")


def test_results_over_the_status_bound_fail_the_step_naming_the_bound() -> None:
    w = World.of(_spec())
    w.reconcile()
    big = "x" * (results.STATUS_BUDGET_BYTES + 10)
    w.succeed("train", {"model-uri": big, "auc": "1"})
    w.settle()
    ts = w.task_status("train")
    assert ts["phase"] == "Failed" and ts["reason"] == results.RESULTS_TOO_LARGE
    assert "256 KiB" in ts["message"] and "by reference" in ts["message"]


def test_a_restart_after_the_job_succeeded_reads_the_results_then() -> None:
    w = World.of(_spec())
    w.reconcile()
    w.succeed("train", {"model-uri": "u", "auc": "0.5"})
    # A fresh operator: the status still says Running, the Job says Succeeded.
    assert w.task_phase("train") == "Running"
    w.settle()
    assert w.task_status("train")["results"] == {"model-uri": "u", "auc": "0.5"}
    assert w.task_phase("train") == "Succeeded"


def test_steps_without_results_keep_their_template_and_hash() -> None:
    spec = parse_pipeline_spec({"tasks": [{"name": "a", "task": {"image": IMG, "args": ["x"]}}]})
    step = spec.tasks[0]
    assert step.task is not None
    res = resolve_step(step, step.task, {})
    assert res.results == ()
    main = res.pod_template["spec"]["containers"][0]
    assert "terminationMessagePath" not in main and "env" not in main
    job = build_job(
        pipeline="p", namespace="ns", pipeline_uid="u", step=res, run=1, attempt=1, retry_base=0
    )
    assert _main(job)["args"] == ["x"]


def _errors(spec: dict[str, Any], tasks: dict[str, Any] | None = None) -> list[str]:
    report = validation.check_pipeline(spec, name="p", tasks=tasks or {})
    return [f.message for f in report.findings]


def test_validation_names_unknown_steps_undeclared_results_and_cycles() -> None:
    spec = _spec()
    spec["tasks"][0]["task"]["args"] = ["$(tasks.register.results.x)"]
    spec["tasks"].append(
        {"name": "c", "task": {"image": IMG, "args": ["$(tasks.trian.results.auc)"]}}
    )
    found = " | ".join(_errors(spec))
    assert 'task "register" declares no result "x"' in found
    assert 'no task "trian" (did you mean "train"?)' in found
    assert "cycle: " in found and "refers to" in found


def test_validation_warns_when_the_producers_task_is_not_applied_yet() -> None:
    spec = {
        "tasks": [
            {"name": "a", "taskRef": {"name": "trainer"}},
            {"name": "b", "task": {"image": IMG, "args": ["$(tasks.a.results.uri)"]}},
        ]
    }
    report = validation.check_pipeline(spec, name="p", tasks={})
    assert report.refusal() is None  # the webhook lets it in
    assert any("not known yet" in f.message for f in report.warnings)
    trainer = {"spec": {"image": IMG, "results": [{"name": "other"}]}}
    report = validation.check_pipeline(spec, name="p", tasks={"trainer": trainer})
    assert any('declares no result "uri"' in f.message for f in report.errors)
    assert report.flow is not None and report.flow.main_deps["b"] == ["a"]


def test_validation_checks_pipeline_results_and_result_names() -> None:
    spec = _spec(results=[{"name": "r", "value": "$(tasks.train.results.nope)"}])
    assert any('pipeline result "r"' in m and '"nope"' in m for m in _errors(spec))
    spec = _spec()
    spec["tasks"][0]["task"]["results"] = [{"name": "a"}, {"name": "a"}]
    assert any("declared twice" in m for m in _errors(spec))


def test_results_not_read_yet_keep_the_step_running_and_ask_to_look_again() -> None:
    w = World.of(_spec())
    w.reconcile()
    w.succeed("train", {"model-uri": "u", "auc": "1"})
    plan = reconcile(w.pipeline, w.tasks, list(w.jobs.values()), w.now, pods={})
    st = plan.status or {}
    train = next(t for t in st.get("tasks", w.status["tasks"]) if t["name"] == "train")
    assert train["phase"] == "Running"
    assert plan.requeue_after == 5


class _FakeKube:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = fail

    async def list_pods(self, namespace: str, selector: str, **_: Any) -> Any:
        self.calls.append((namespace, selector))
        if self.fail:
            raise ApiError(403, "Forbidden")
        pod = {
            "metadata": {"name": "x", "namespace": namespace, "labels": {"job-name": "j"}},
            "status": {
                "phase": "Succeeded",
                "containerStatuses": [
                    {"name": "main", "state": {"terminated": {"exitCode": 0, "message": "{}"}}}
                ],
            },
        }
        return {"items": [pod]}


def test_pod_reads_list_one_jobs_pods_by_label_once() -> None:
    kube = _FakeKube()
    reads = PodReads(kube)  # type: ignore[arg-type]
    first = asyncio.run(reads.job_pods("ns", "p-r1-train-a1"))
    again = asyncio.run(reads.job_pods("ns", "p-r1-train-a1"))
    assert first == again and first is not None and first[0].termination_message == "{}"
    assert kube.calls == [("ns", "batch.kubernetes.io/job-name=p-r1-train-a1")]


def test_pod_reads_only_for_steps_with_results_and_a_failed_read_is_not_remembered() -> None:
    w = World.of({"tasks": [{"name": "a", "task": {"image": IMG}}]})
    w.reconcile()
    w.succeed("a")
    kube = _FakeKube(fail=True)
    reads = PodReads(kube)  # type: ignore[arg-type]
    views = [v for v in map(observe_job, w.jobs.values()) if v is not None]
    prepared = prepare(w.pipeline, w.tasks)
    assert asyncio.run(reads.for_reconcile("ns", w.pipeline, views, prepared)) == {}
    assert kube.calls == []  # a step without results costs no request
    assert asyncio.run(reads.job_pods("ns", "j")) is None
    assert asyncio.run(reads.job_pods("ns", "j")) is None
    assert len(kube.calls) == 2


def test_invalid_results_count_in_sluice_task_retries_total() -> None:
    spec = _spec()
    spec["tasks"][0]["retry"] = {"limit": 1, "backoff": {"initialSeconds": 1}}
    w = World.of(spec)
    registry = CollectorRegistry()
    recorder = Recorder(Metrics(registry))
    recorder.lead(True)
    recorder.plan(("ns", "p"), w.reconcile(), w.status)
    w.succeed("train", {"model-uri": "s3://m"})  # auc missing: InvalidResults, retried
    recorder.plan(("ns", "p"), w.reconcile(), w.status)
    retries = {
        s.labels["kind"]: s.value
        for f in registry.collect()
        for s in f.samples
        if s.name == "sluice_task_retries_total"
    }
    assert sum(retries.values()) == 1, retries
