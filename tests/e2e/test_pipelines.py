"""Whole pipelines on the real control plane: the real Job controller, kwok pods,
and the operator running as `sluice run` against the API server."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

import pytest
from kubernetes import client

from support.cluster import Cluster
from support.operator import OperatorProcess
from support.pipelines import Sluice, sim
from support.wait import wait_for

pytestmark = pytest.mark.cluster

BUSYBOX = "busybox:1.36"


def inline(name: str, *deps: str, **task: Any) -> dict[str, Any]:
    return {"name": name, "dependsOn": list(deps), "task": {"image": BUSYBOX, **task}}


def ref(name: str, task: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "taskRef": {"name": task}, "dependsOn": list(deps), **extra}


def _t(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _pods_done(s: Sluice) -> dict[str, datetime]:
    """When each Job's pod finished (its main container's finishedAt), by Job name: a step
    is done then (the pod view), up to a second before the Job's batched Complete."""
    out = {}
    for p in s.core.list_namespaced_pod(
        s.ns, label_selector="app.kubernetes.io/managed-by=sluice"
    ).items:
        job = (p.metadata.labels or {}).get("job-name")
        for c in p.status.container_statuses or []:
            if c.name == "main" and c.state.terminated and p.status.phase == "Succeeded":
                out[job] = c.state.terminated.finished_at
    return out


def _job_times(s: Sluice, pipeline: str) -> dict[str, tuple[datetime, datetime | None]]:
    """(created, done) of each step's Job; done: its pod finished, else the Job completed."""
    out = {}
    pods = _pods_done(s)
    for j in s.jobs(pipeline):
        task = j.metadata.annotations["sluice.dev/task-name"]
        out[task] = (
            j.metadata.creation_timestamp,
            pods.get(j.metadata.name) or j.status.completion_time,
        )
    return out


@pytest.fixture
def s(api_client: client.ApiClient, e2e_namespace: str) -> Sluice:
    return Sluice(api_client, e2e_namespace)


def test_diamond_runs_in_dependency_order(s: Sluice) -> None:
    s.pipeline(
        "diamond",
        {"tasks": [inline("a"), inline("b", "a"), inline("c", "a"), inline("d", "b", "c")]},
    )
    st = s.wait_phase("diamond", "Succeeded")
    assert st["progress"] == "4/4"
    assert st["run"] == 1
    times = _job_times(s, "diamond")
    assert set(times) == {"a", "b", "c", "d"}
    a_done = times["a"][1]
    assert a_done is not None
    assert times["b"][0] >= a_done and times["c"][0] >= a_done
    assert times["d"][0] >= max(times["b"][1], times["c"][1])  # type: ignore[type-var]
    # Every Job is owned by the Pipeline and labelled for selection.
    job = s.jobs("diamond")[0]
    owner = job.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("Pipeline", "diamond", True)
    assert {
        "sluice.dev/pipeline",
        "sluice.dev/task",
        "sluice.dev/run",
        "sluice.dev/attempt",
    } <= set(job.metadata.labels)
    conditions = {c["type"]: c for c in st["conditions"]}
    assert conditions["Succeeded"]["status"] == "True"
    reasons = {e.reason for e in s.events("diamond")}
    assert {"RunStarted", "Succeeded"} <= reasons


def test_max_parallel_is_never_exceeded(s: Sluice) -> None:
    s.pipeline(
        "wide",
        {
            "maxParallel": 2,
            "tasks": [inline(f"t{i}", podTemplate=sim(duration="2s")) for i in range(5)],
        },
    )
    peak = 0

    def done() -> bool:
        nonlocal peak
        jobs = s.jobs("wide")
        pods = _pods_done(s)  # a Job whose pod succeeded is done (the pod view)
        active = [
            j
            for j in jobs
            if j.metadata.name not in pods
            and not any(
                c.type in ("Complete", "Failed") and c.status == "True"
                for c in j.status.conditions or []
            )
        ]
        peak = max(peak, len(active))
        return s.status("wide").get("phase") == "Succeeded"

    wait_for(done, timeout=120, what="wide pipeline to succeed")
    assert peak == 2
    assert len(s.jobs("wide")) == 5


def test_failed_attempt_is_retried_after_backoff_and_then_succeeds(s: Sluice) -> None:
    # Attempt 1 fails; while it waits to retry, the Task is fixed: the next
    # attempt runs the new definition (the documented rule for edits mid-run).
    s.task(
        "flaky",
        {
            "image": BUSYBOX,
            "podTemplate": sim("fail", exit_code=7),
            "retry": {"limit": 2, "backoff": {"initialSeconds": 3}},
        },
    )
    s.pipeline("retry", {"tasks": [ref("flaky", "flaky")]})
    ts = s.wait_task("retry", "flaky", "Retrying")
    assert ts["reason"] == "ExitCode"
    assert ts["message"].startswith("exit code 7: ")
    assert (_t(ts["nextRetryAt"]) - _t(ts["finishedAt"])).total_seconds() == 3
    s.task("flaky", {"image": BUSYBOX, "retry": {"limit": 2, "backoff": {"initialSeconds": 3}}})
    st = s.wait_phase("retry", "Succeeded")
    flaky = next(t for t in st["tasks"] if t["name"] == "flaky")
    assert flaky["attempts"] == 2
    jobs = sorted(s.jobs("retry"), key=lambda j: j.metadata.labels["sluice.dev/attempt"])
    assert [j.metadata.labels["sluice.dev/attempt"] for j in jobs] == ["1", "2"]
    failed_at = next(
        c.last_transition_time for c in jobs[0].status.conditions if c.type == "Failed"
    )
    assert (jobs[1].metadata.creation_timestamp - failed_at).total_seconds() >= 3
    assert "TaskRetrying" in {e.reason for e in s.events("retry")}


def _degraded(s: Sluice) -> None:
    s.task(
        "bad",
        {
            "image": BUSYBOX,
            "podTemplate": sim("fail", exit_code=3),
            "retry": {"limit": 1, "backoff": {"initialSeconds": 1}},
        },
    )
    s.task("good", {"image": BUSYBOX})
    s.pipeline(
        "deg",
        {
            "tasks": [
                ref("bad", "bad"),
                ref("after", "good", "bad"),
                ref("later", "good", "after"),
                ref("x", "good"),
                ref(
                    "y",
                    "good",
                    "x",
                ),
            ]
        },
    )
    st = s.wait_phase("deg", "Degraded")
    # The independent branch goes on to the end.
    wait_for(
        lambda: s.task_status("deg", "y").get("phase") == "Succeeded",
        timeout=60,
        what="the independent branch",
    )
    st = s.status("deg")
    tasks = {t["name"]: t for t in st["tasks"]}
    assert tasks["bad"]["phase"] == "Failed"
    assert tasks["bad"]["attempts"] == 2
    assert "exit code 3" in tasks["bad"]["message"]
    assert tasks["after"]["phase"] == "Blocked"
    assert tasks["later"]["phase"] == "Blocked"
    conditions = {c["type"]: c for c in st["conditions"]}
    assert conditions["Degraded"]["status"] == "True"
    assert "bad" in st["message"]


def test_exhausted_retries_degrade_block_dependents_and_recover_when_the_task_is_fixed(
    s: Sluice, operator: OperatorProcess
) -> None:
    _degraded(s)
    metrics = operator.metrics()
    assert re.search(
        rf'sluice_pipeline_degraded{{namespace="{s.ns}",pipeline="deg"}} 1\.0', metrics
    )
    # Fix the Task: the pipeline resumes by itself, without rerunning what succeeded.
    s.task("bad", {"image": BUSYBOX, "retry": {"limit": 1, "backoff": {"initialSeconds": 1}}})
    st = s.wait_phase("deg", "Succeeded")
    tasks = {t["name"]: t for t in st["tasks"]}
    assert tasks["bad"]["attempts"] == 3
    assert tasks["x"]["attempts"] == 1 and tasks["y"]["attempts"] == 1
    per_task: dict[str, int] = {}
    for j in s.jobs("deg"):
        task = j.metadata.annotations["sluice.dev/task-name"]
        per_task[task] = per_task.get(task, 0) + 1
    assert per_task == {"bad": 3, "after": 1, "later": 1, "x": 1, "y": 1}
    assert {"Degraded", "DefinitionChanged"} <= {e.reason for e in s.events("deg")}
    metrics = operator.metrics()
    assert re.search(
        rf'sluice_pipeline_degraded{{namespace="{s.ns}",pipeline="deg"}} 0\.0', metrics
    )


def test_retry_annotation_retries_failed_tasks_and_rerun_starts_a_fresh_run(s: Sluice) -> None:
    _degraded(s)
    s.annotate("deg", "sluice.dev/retry", "1")
    wait_for(
        lambda: s.task_status("deg", "bad").get("attempts") == 3,
        timeout=60,
        what="a third attempt of bad",
    )
    st = s.wait_phase("deg", "Degraded")
    assert st["handledRetry"] == "1"
    # Rerun: every task runs again, in run 2.
    s.task("bad", {"image": BUSYBOX})
    s.annotate("deg", "sluice.dev/rerun", "r1")
    wait_for(lambda: s.status("deg").get("run") == 2, timeout=30, what="run 2")
    st = s.wait_phase("deg", "Succeeded")
    assert all(t["attempts"] == 1 for t in st["tasks"])
    run2 = [j for j in s.jobs("deg") if j.metadata.labels["sluice.dev/run"] == "2"]
    assert len(run2) == 5


def test_suspend_holds_new_jobs_until_resumed(s: Sluice) -> None:
    s.pipeline("sus", {"suspend": True, "tasks": [inline("a"), inline("b", "a")]})
    st = wait_for(lambda: s.status("sus") or None, timeout=30, what="a status")
    assert st["phase"] == "Pending"
    assert "Suspended" in st["message"]
    assert s.jobs("sus") == []
    s.patch("sus", {"spec": {"suspend": False}})
    s.wait_phase("sus", "Succeeded")


def test_pipeline_timeout_fails_the_run_and_stops_its_jobs(s: Sluice) -> None:
    s.pipeline(
        "slow",
        {
            "timeoutSeconds": 3,
            "tasks": [inline("long", podTemplate=sim(duration="60s")), inline("next", "long")],
        },
    )
    st = s.wait_phase("slow", "Failed", timeout=60)
    conditions = {c["type"]: c for c in st["conditions"]}
    assert conditions["Succeeded"]["reason"] == "Timeout"
    tasks = {t["name"]: t for t in st["tasks"]}
    assert tasks["long"]["phase"] == "Failed"
    assert tasks["next"]["phase"] == "Skipped"
    wait_for(
        lambda: not [j for j in s.jobs("slow") if not j.metadata.deletion_timestamp],
        timeout=60,
        what="the running Job to be deleted",
    )


def test_deleting_a_pipeline_garbage_collects_its_jobs(s: Sluice) -> None:
    s.pipeline("gc", {"tasks": [inline("a"), inline("b")]})
    s.wait_phase("gc", "Succeeded")
    assert len(s.jobs("gc")) == 2
    s.delete("gc")
    wait_for(lambda: s.jobs("gc") == [], timeout=60, what="the Jobs to be garbage-collected")


def test_invalid_specs_fail_with_a_message_naming_the_problem(s: Sluice) -> None:
    s.pipeline("cyclic", {"tasks": [inline("extract", "clean"), inline("clean", "extract")]})
    s.pipeline("orphan", {"tasks": [ref("a", "not-applied-yet")]})
    s.pipeline("fine", {"tasks": [inline("a")]})
    st = s.wait_phase("cyclic", "Failed")
    assert "cycle: clean -> extract -> clean" in st["message"]
    st = s.wait_phase("orphan", "Failed")
    assert 'Task "not-applied-yet", which does not exist' in st["message"]
    assert "InvalidSpec" in {e.reason for e in s.events("cyclic")}
    s.wait_phase("fine", "Succeeded")  # other pipelines are unaffected
    # Applying the missing Task lets the pipeline run.
    s.task("not-applied-yet", {"image": BUSYBOX})
    s.wait_phase("orphan", "Succeeded")


def test_metrics_count_runs_attempts_and_handoffs(s: Sluice, operator: OperatorProcess) -> None:
    s.pipeline("chain", {"tasks": [inline("a"), inline("b", "a"), inline("c", "b")]})
    s.wait_phase("chain", "Succeeded")
    text = operator.metrics()

    def value(pattern: str) -> float:
        m = re.search(pattern + r" ([0-9.e+-]+)", text)
        assert m, f"{pattern} not in metrics"
        return float(m.group(1))

    assert value(rf'sluice_pipeline_runs_total{{namespace="{s.ns}",result="Succeeded"}}') == 1
    assert value(rf'sluice_task_attempts_total{{namespace="{s.ns}",result="succeeded"}}') == 3
    assert value(r"sluice_handoff_latency_seconds_count") >= 2
    assert value(r'sluice_reconcile_total{result="success"}') >= 1
    assert value(r"sluice_jobs_created_total") >= 3
    # every Job created is timed: the API server's share of the hand-off
    assert value(r"sluice_job_create_seconds_count") == value(r"sluice_jobs_created_total")
    assert (
        value(rf'sluice_task_duration_seconds_count{{namespace="{s.ns}",result="succeeded"}}') == 3
    )


def test_operator_killed_mid_run_continues_exactly_where_it_was(
    cluster: Cluster,
    api_client: client.ApiClient,
    crds: None,
    make_namespace: Any,
    tmp_path: Any,
) -> None:
    ns = make_namespace("kill-")
    s = Sluice(api_client, ns)
    op = OperatorProcess(cluster.kubeconfig, tmp_path / "op.log", namespaces=[ns]).start()
    try:
        chain = [inline("s0")] + [inline(f"s{i}", f"s{i - 1}") for i in range(1, 8)]
        s.pipeline("chain", {"tasks": chain})
        s.pipeline("fan", {"tasks": [inline("root")] + [inline(f"f{i}", "root") for i in range(6)]})
        for round_ in range(4):
            # Kill it the moment some progress has been made (a new Job exists).
            before = len(s.jobs())
            wait_for(
                lambda before=before: (
                    len(s.jobs()) > before or s.status("chain").get("phase") == "Succeeded"
                ),
                timeout=60,
                what="progress",
            )
            op.kill()
            op = OperatorProcess(
                cluster.kubeconfig, tmp_path / f"op{round_}.log", namespaces=[ns]
            ).start()
        s.wait_phase("chain", "Succeeded")
        s.wait_phase("fan", "Succeeded")
    finally:
        op.stop()
    for name, count in (("chain", 8), ("fan", 7)):
        jobs = s.jobs(name)
        keys = [
            (j.metadata.labels["sluice.dev/task"], j.metadata.labels["sluice.dev/attempt"])
            for j in jobs
        ]
        assert len(keys) == len(set(keys)) == count  # one Job per task and attempt
        st = s.status(name)
        assert all(t["attempts"] == 1 and t["phase"] == "Succeeded" for t in st["tasks"])


def test_handoff_is_event_driven(s: Sluice, operator: OperatorProcess) -> None:
    """A chain's step-to-step time is the pod run time plus a small hand-off, not a poll."""
    n = 6
    s.pipeline(
        "handoff", {"tasks": [inline("h0")] + [inline(f"h{i}", f"h{i - 1}") for i in range(1, n)]}
    )
    started = time.monotonic()
    s.wait_phase("handoff", "Succeeded")
    elapsed = time.monotonic() - started
    # Each pod runs ~1 s in the simulator; a 10 s requeue anywhere would show.
    assert elapsed < n * 1.0 + 10


def test_a_job_name_taken_by_a_foreign_job_is_reported_not_adopted(s: Sluice) -> None:
    from sluice.core.naming import job_name

    squatter = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name("squat", "a", 1, 1)},
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": BUSYBOX}]}
            }
        },
    }
    s.batch.create_namespaced_job(s.ns, squatter)
    s.pipeline("squat", {"tasks": [inline("a")]})
    wait_for(
        lambda: "JobCreateFailed" in {e.reason for e in s.events("squat")},
        timeout=60,
        what="a JobCreateFailed event",
    )
    assert s.task_status("squat", "a").get("phase") != "Running"
    assert "belongs to something else" in s.status("squat")["message"]


def test_jobs_refused_by_a_full_quota_give_a_phase_a_condition_and_one_counted_event(
    s: Sluice,
) -> None:
    # Issue 19, item 4: no phase, no conditions, and a new Event object per retry.
    quota = client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name="no-jobs"),
        spec=client.V1ResourceQuotaSpec(hard={"count/jobs.batch": "0"}),
    )
    s.core.create_namespaced_resource_quota(s.ns, quota)
    s.pipeline("quota", {"tasks": [inline("a")]})

    def refused() -> dict[str, Any] | None:
        st = s.status("quota")
        cond = next((c for c in st.get("conditions") or [] if c["type"] == "Progressing"), {})
        return st if cond.get("reason") == "JobCreateFailed" else None

    st = wait_for(refused, timeout=60, what="the refusal in the status")
    assert st["phase"] == "Pending" and st["progress"] == "0/1"
    assert "exceeded quota" in st["message"] or "quota" in st["message"]

    def counted() -> list[Any] | None:
        evs = [e for e in s.events("quota") if e.reason == "JobCreateFailed"]
        return evs if evs and max(e.count or 1 for e in evs) >= 3 else None

    events = wait_for(counted, timeout=60, what="the refusal Event counted three times")
    assert len(events) == 1, [(e.metadata.name, e.count) for e in events]

    s.core.delete_namespaced_resource_quota("no-jobs", s.ns)
    st = s.wait_phase("quota", "Succeeded", timeout=90)
    assert not any(c["reason"] == "JobCreateFailed" for c in st["conditions"])


def test_a_job_the_api_server_refuses_fails_its_step_with_the_servers_words(s: Sluice) -> None:
    # Issue 19, item 3: a spec the API server refuses (a value only it checks) was
    # retried with a backoff for ever; it fails the step, and a fixed Task recovers.
    bad = {"image": BUSYBOX, "podTemplate": {"spec": {"activeDeadlineSeconds": 0}}}
    s.task("refused", bad)
    s.pipeline("refused", {"tasks": [ref("a", "refused")]})
    st = s.wait_phase("refused", "Degraded", timeout=60)
    (ts,) = st["tasks"]
    assert (ts["phase"], ts["reason"], ts["attempts"]) == ("Failed", "JobRejected", 1)
    assert "activeDeadlineSeconds" in ts["message"] and "Invalid value" in ts["message"]
    reasons = [e.reason for e in sorted(s.events("refused"), key=lambda e: e.metadata.name)]
    assert "TaskFailed" in reasons and "Degraded" in reasons
    s.task("refused", {"image": BUSYBOX})
    s.wait_phase("refused", "Succeeded", timeout=90)
