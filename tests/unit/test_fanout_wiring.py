"""Fan-out wired into the reconciler (issue 15): one Job per combination, each its own
retry budget, minSuccess, maxParallel (the step's and the pipeline's), a fix rerunning
only the failed combinations, results as arrays, dynamic fan-out, crash safety."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.api import RETRY_ANNOTATION
from sluice.core.jobspec import CONTAINER_NAME
from support.world import World, ts

IMG = "busybox:1.36"


def _sweep(**matrix: Any) -> dict[str, Any]:
    return {
        "name": "sweep",
        "matrix": {
            "params": [
                {"name": "lr", "values": ["0.1", "0.01", "0.001"]},
                {"name": "depth", "values": ["4", "8"]},
            ],
            **matrix,
        },
        "task": {
            "image": IMG,
            "params": [{"name": "lr"}, {"name": "depth"}],
            "args": ["--lr=$(params.lr)", "--depth=$(params.depth)"],
            "results": [{"name": "auc"}],
        },
    }


def _best() -> dict[str, Any]:
    return {
        "name": "best",
        "task": {"image": IMG, "args": ["$(tasks.sweep.results.auc)"]},
    }


def _jobs(w: World, step: str) -> list[dict[str, Any]]:
    return [
        j for j in w.jobs.values() if j["metadata"]["annotations"]["sluice.dev/task-name"] == step
    ]


def _by_combination(w: World, step: str) -> dict[int, dict[str, Any]]:
    """The latest Job of each combination."""
    out: dict[int, dict[str, Any]] = {}
    for j in sorted(
        _jobs(w, step), key=lambda j: int(j["metadata"]["labels"]["sluice.dev/attempt"])
    ):
        out[int(j["metadata"]["labels"]["sluice.dev/combination"])] = j
    return out


def _active(j: dict[str, Any]) -> bool:
    return not j["status"].get("conditions")


def _succeed(w: World, job: dict[str, Any], results: dict[str, str] | None = None) -> None:
    if results is not None:
        w.messages[job["metadata"]["name"]] = json.dumps(results)
    job["status"] = {
        "succeeded": 1,
        "completionTime": ts(w.now),
        "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": ts(w.now)}],
    }


def _fail(w: World, job: dict[str, Any]) -> None:
    job["status"] = {
        "failed": 1,
        "conditions": [
            {
                "type": "Failed",
                "status": "True",
                "reason": "PodFailurePolicy",
                "message": "Container main for pod ns/x failed with exit code 3 matching "
                "FailJob rule at index 1",
                "lastTransitionTime": ts(w.now),
            }
        ],
    }


def _args(job: dict[str, Any]) -> list[str]:
    c = next(
        c for c in job["spec"]["template"]["spec"]["containers"] if c["name"] == CONTAINER_NAME
    )
    return list(c["args"])


def test_a_3x2_sweep_runs_six_jobs_with_distinct_params_and_hands_on_arrays() -> None:
    w = World.of({"tasks": [_sweep(), {**_best(), "dependsOn": ["sweep"]}]})
    w.reconcile()
    jobs = _by_combination(w, "sweep")
    assert sorted(jobs) == [0, 1, 2, 3, 4, 5]
    assert _args(jobs[0]) == ["--lr=0.1", "--depth=4"]
    assert _args(jobs[3]) == ["--lr=0.01", "--depth=8"]
    assert (
        jobs[5]["metadata"]["name"].startswith("p-sweep-")
        and "-c5-1-1" in jobs[5]["metadata"]["name"]
    )
    assert jobs[5]["metadata"]["labels"]["sluice.dev/combination"] == "5"
    status = w.task_status("sweep")
    assert status["phase"] == "Running"
    assert status["matrix"]["width"] == 6 and status["matrix"]["running"] == 6
    assert w.status["progress"] == "0/7"
    for i, j in jobs.items():
        _succeed(w, j, {"auc": f"0.{i}"})
    w.settle()
    status = w.task_status("sweep")
    assert status["phase"] == "Succeeded"
    assert status["matrix"]["done"] == "0-5"
    assert json.loads(status["results"]["auc"]) == [f"0.{i}" for i in range(6)]
    best = w.job_of("best")
    assert _args(best) == ['["0.0","0.1","0.2","0.3","0.4","0.5"]']
    assert w.status["progress"] == "6/7"


def test_plain_pipelines_are_untouched() -> None:
    w = World.of({"tasks": [{"name": "a", "task": {"image": IMG}}]})
    w.reconcile()
    (job,) = w.jobs.values()
    assert "sluice.dev/combination" not in job["metadata"]["labels"]
    assert "matrix" not in w.task_status("a")


def test_each_combination_retries_on_its_own_and_without_min_success_one_failure_fails() -> None:
    step = _sweep()
    step["retry"] = {"limit": 1, "backoff": {"initialSeconds": 1}}
    w = World.of({"tasks": [step, {**_best(), "dependsOn": ["sweep"]}]})
    w.reconcile()
    jobs = _by_combination(w, "sweep")
    _fail(w, jobs[2])
    w.reconcile()
    assert w.task_status("sweep")["matrix"]["retrying"] == 1
    w.advance(2)
    w.reconcile()
    again = _by_combination(w, "sweep")[2]
    assert again["metadata"]["labels"]["sluice.dev/attempt"] == "2"
    assert len(_jobs(w, "sweep")) == 7
    _fail(w, again)
    for i in (0, 1, 3, 4, 5):
        _succeed(w, jobs[i], {"auc": "0.9"})
    w.settle()
    status = w.task_status("sweep")
    assert status["phase"] == "Failed"
    assert status["matrix"]["failed"] == 1 and status["matrix"]["succeeded"] == 5
    assert "combination 2 (lr=0.01, depth=4)" in status["message"]
    assert w.task_phase("best") == "Blocked"
    assert w.phase == "Degraded"

    # A retry request reruns only the failed combination, with a fresh budget.
    w.annotate(RETRY_ANNOTATION, "1")
    w.reconcile()
    latest = _by_combination(w, "sweep")
    assert [i for i, j in latest.items() if _active(j)] == [2]
    assert latest[2]["metadata"]["labels"]["sluice.dev/attempt"] == "3"
    assert latest[2]["metadata"]["annotations"]["sluice.dev/retry-base"] == "2"
    assert len(_jobs(w, "sweep")) == 8
    _succeed(w, latest[2], {"auc": "0.5"})
    w.settle()
    assert w.task_phase("sweep") == "Succeeded"
    assert json.loads(w.task_status("sweep")["results"]["auc"])[2] == "0.5"
    assert w.task_phase("best") == "Running"


def test_min_success_tolerates_a_failing_combination() -> None:
    step = {**_sweep(minSuccess="80%"), "retry": {"limit": 0}}
    w = World.of({"tasks": [step, {**_best(), "dependsOn": ["sweep"]}]})
    w.reconcile()
    jobs = _by_combination(w, "sweep")
    _fail(w, jobs[1])
    for i in (0, 2, 3, 4, 5):
        _succeed(w, jobs[i], {"auc": str(i)})
    w.settle()
    status = w.task_status("sweep")
    assert status["phase"] == "Succeeded"
    assert json.loads(status["results"]["auc"]) == ["0", "", "2", "3", "4", "5"]
    assert w.task_phase("best") == "Running"


def test_matrix_max_parallel_and_the_pipelines_both_hold() -> None:
    w = World.of(
        {
            "maxParallel": 3,
            "tasks": [_sweep(maxParallel=2), {"name": "other", "task": {"image": IMG}}],
        }
    )
    w.reconcile()
    assert sum(_active(j) for j in _jobs(w, "sweep")) == 2
    assert len(_jobs(w, "other")) == 1
    for j in _by_combination(w, "sweep").values():
        _succeed(w, j, {"auc": "1"})
    w.reconcile()
    assert sum(_active(j) for j in _jobs(w, "sweep")) == 2
    assert w.task_status("sweep")["matrix"]["succeeded"] == 2


def test_dynamic_fan_out_over_a_list_result() -> None:
    spec = {
        "tasks": [
            {"name": "list", "task": {"image": IMG, "results": [{"name": "shards"}]}},
            {
                "name": "work",
                "matrix": {
                    "params": [{"name": "shard", "fromResult": "$(tasks.list.results.shards)"}]
                },
                "task": {"image": IMG, "params": [{"name": "shard"}], "args": ["$(params.shard)"]},
            },
        ]
    }
    w = World.of(spec)
    w.reconcile()
    assert w.active_tasks() == {"list"}
    w.succeed("list", {"shards": json.dumps(["a", "b$x", "c"])})
    w.settle()
    jobs = _by_combination(w, "work")
    assert [_args(jobs[i]) for i in range(3)] == [["a"], ["b$$x"], ["c"]]


def test_a_bad_from_result_value_fails_the_consumer_with_invalid_matrix() -> None:
    spec = {
        "tasks": [
            {"name": "list", "task": {"image": IMG, "results": [{"name": "shards"}]}},
            {
                "name": "work",
                "matrix": {
                    "params": [{"name": "shard", "fromResult": "$(tasks.list.results.shards)"}]
                },
                "task": {"image": IMG, "params": [{"name": "shard"}]},
            },
        ]
    }
    w = World.of(spec)
    w.reconcile()
    w.succeed("list", {"shards": "not json"})
    w.settle()
    status = w.task_status("work")
    assert status["phase"] == "Failed" and status["reason"] == "InvalidMatrix"
    assert "not JSON" in status["message"]


def test_an_empty_list_skips_the_step() -> None:
    spec = {
        "tasks": [
            {"name": "list", "task": {"image": IMG, "results": [{"name": "shards"}]}},
            {
                "name": "work",
                "matrix": {
                    "params": [{"name": "shard", "fromResult": "$(tasks.list.results.shards)"}]
                },
                "task": {"image": IMG, "params": [{"name": "shard"}]},
            },
        ]
    }
    w = World.of(spec)
    w.reconcile()
    w.succeed("list", {"shards": "[]"})
    w.settle()
    assert w.task_status("work")["reason"] == "EmptyMatrix"
    assert w.phase == "Succeeded"


def test_a_dynamic_matrix_over_the_cap_fails() -> None:
    spec = {
        "tasks": [
            {"name": "list", "task": {"image": IMG, "results": [{"name": "shards"}]}},
            {
                "name": "work",
                "matrix": {
                    "params": [{"name": "shard", "fromResult": "$(tasks.list.results.shards)"}]
                },
                "task": {"image": IMG, "params": [{"name": "shard"}]},
            },
        ]
    }
    w = World.of(spec)
    w.reconcile()
    w.succeed("list", {"shards": json.dumps([str(i) for i in range(300)])})
    w.settle()
    status = w.task_status("work")
    assert status["reason"] == "InvalidMatrix"
    assert "300 combinations, more than the cap of 256" in status["message"]


def test_a_restarted_operator_that_lost_the_status_starts_no_combination_twice() -> None:
    w = World.of({"tasks": [_sweep(maxParallel=4)]})
    w.reconcile()
    first = set(w.created)
    w.pipeline.pop("status")  # as if the status write never happened
    w.reconcile()
    assert set(w.created) == first  # same names: AlreadyExists, nothing new
    jobs = _by_combination(w, "sweep")
    for j in jobs.values():
        _succeed(w, j, {"auc": "1"})
    w.settle()
    for j in _by_combination(w, "sweep").values():
        if _active(j):
            _succeed(w, j, {"auc": "1"})
    w.settle()
    assert w.task_phase("sweep") == "Succeeded"
    names = [j for j in w.created if "-sweep-" in j]
    assert len(names) == len(set(names)) == 6


@settings(max_examples=40, deadline=None)
@given(
    own=st.integers(1, 5),
    pipeline=st.integers(1, 6),
    order=st.lists(st.integers(0, 100), min_size=1, max_size=40),
)
def test_property_max_parallel_is_never_exceeded(own: int, pipeline: int, order: list[int]) -> None:
    w = World.of(
        {
            "maxParallel": pipeline,
            "tasks": [_sweep(maxParallel=own), {**_sweep(maxParallel=own), "name": "again"}],
        }
    )
    w.reconcile()
    for pick in order:
        active = [j for j in w.jobs.values() if _active(j)]
        assert len(active) <= pipeline
        for step in ("sweep", "again"):
            assert sum(_active(j) for j in _jobs(w, step)) <= own
        if not active:
            break
        _succeed(w, active[pick % len(active)], {"auc": "1"})
        w.reconcile()
    assert len([j for j in w.jobs.values() if _active(j)]) <= pipeline


def test_the_cap_is_the_operators_max_matrix_for_static_and_dynamic_matrices() -> None:
    from sluice.core.reconcile import reconcile

    w = World.of({"tasks": [_sweep()]})
    plan = reconcile(w.pipeline, {}, [], w.now, max_matrix=4)
    assert plan.create == []
    assert plan.status is not None
    assert "6 combinations, more than the cap of 4" in plan.status["message"]
    plan = reconcile(w.pipeline, {}, [], w.now, max_matrix=6)
    assert len(plan.create) == 6


def test_the_webhooks_check_takes_the_cap_too() -> None:
    from sluice.core.validation import check_pipeline

    report = check_pipeline({"tasks": [_sweep()]}, name="p", tasks={}, max_matrix=5)
    assert [f.message for f in report.errors] == [
        'task "sweep": the matrix has 6 combinations, more than the cap of 5 '
        "(sluice run --max-matrix)"
    ]
    assert check_pipeline({"tasks": [_sweep()]}, name="p", tasks={}).errors == []


def test_a_running_combinations_job_deleted_counts_as_a_failed_attempt() -> None:
    w = World.of({"tasks": [_sweep()]})
    w.reconcile()
    gone = _by_combination(w, "sweep")[1]["metadata"]["name"]
    del w.jobs[gone]
    w.reconcile()
    status = w.task_status("sweep")
    assert status["matrix"]["retrying"] + status["matrix"]["running"] == 6
    w.advance(60)
    w.reconcile()
    again = _by_combination(w, "sweep")[1]
    assert again["metadata"]["labels"]["sluice.dev/attempt"] == "2"
    assert again["metadata"]["name"] != gone


def test_a_timed_out_run_keeps_its_matrixed_step_failed() -> None:
    w = World.of({"timeoutSeconds": 10, "tasks": [_sweep()]})
    w.reconcile()
    w.advance(11)
    w.settle()
    assert w.phase == "Failed"
    assert w.task_phase("sweep") == "Failed"
    assert w.task_status("sweep")["reason"] == "PipelineTimeout"
    w.advance(5)
    w.settle()
    assert w.task_phase("sweep") == "Failed"
