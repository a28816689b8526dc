"""The reconciler, played out in an in-memory world (no server, no clock)."""

from __future__ import annotations

from typing import Any

from support.world import World

IMG = {"image": "busybox:1.36"}


def step(name: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "task": dict(IMG), "dependsOn": list(deps), **extra}


def diamond(**spec: Any) -> World:
    return World.of(
        {"tasks": [step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c")], **spec}
    )


def test_a_new_pipeline_starts_only_its_roots() -> None:
    w = diamond()
    w.reconcile()
    assert w.active_tasks() == {"a"}
    assert w.phase == "Running"
    assert w.status["run"] == 1
    assert w.status["progress"] == "0/4"
    assert w.task_phase("b") == "Pending"


def test_diamond_runs_in_dependency_order_and_succeeds() -> None:
    w = diamond()
    w.reconcile()
    w.succeed("a")
    w.reconcile()  # the same reconcile that sees `a` done starts b and c
    assert w.active_tasks() == {"b", "c"}
    w.succeed("b")
    w.reconcile()
    assert w.active_tasks() == {"c"}
    w.succeed("c")
    w.reconcile()
    assert w.active_tasks() == {"d"}
    w.succeed("d")
    plan = w.reconcile()
    assert w.phase == "Succeeded"
    assert w.status["progress"] == "4/4"
    assert w.condition("Succeeded")["status"] == "True"
    assert w.condition("Progressing")["status"] == "False"
    assert plan.run_finished == "Succeeded"
    assert any(e.reason == "Succeeded" for e in plan.events)
    assert len(w.created) == 4


def test_jobs_are_owned_labelled_and_fail_fast() -> None:
    w = diamond()
    w.reconcile()
    job = w.job_of("a")
    meta = job["metadata"]
    assert meta["ownerReferences"][0]["kind"] == "Pipeline"
    assert meta["ownerReferences"][0]["uid"] == "uid-1"
    assert meta["ownerReferences"][0]["controller"] is True
    assert meta["labels"]["sluice.dev/pipeline"] == "p"
    assert meta["labels"]["sluice.dev/task"] == "a"
    assert meta["labels"]["sluice.dev/run"] == "1"
    assert meta["labels"]["sluice.dev/attempt"] == "1"
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert len(meta["name"]) <= 63


def test_max_parallel_caps_running_tasks() -> None:
    w = World.of({"tasks": [step(f"t{i}") for i in range(5)], "maxParallel": 2})
    w.reconcile()
    assert len(w.active_tasks()) == 2
    w.succeed("t0")
    w.reconcile()
    assert w.active_tasks() == {"t1", "t2"}


def test_reconcile_is_idempotent() -> None:
    w = diamond()
    w.reconcile()
    plan = w.reconcile()
    assert plan.create == [] and plan.status is None and plan.events == []


def test_failed_attempt_is_retried_after_the_backoff() -> None:
    w = World.of({"tasks": [step("a", retry={"limit": 2, "backoff": {"initialSeconds": 10}})]})
    w.reconcile()
    w.fail("a")
    plan = w.reconcile()
    ts = w.task_status("a")
    assert ts["phase"] == "Retrying"
    # A plain non-zero exit says so: not the Job's PodFailurePolicy (issue 19).
    assert ts["reason"] == "ExitCode"
    assert ts["message"].startswith("exit code 3: ")
    assert ts["nextRetryAt"] == "2026-11-26T12:00:10Z"
    assert plan.requeue_after == 10
    assert any(e.reason == "TaskRetrying" for e in plan.events)
    w.advance(5)
    assert w.reconcile().create == []
    w.advance(5)
    plan = w.reconcile()
    assert [j["metadata"]["labels"]["sluice.dev/attempt"] for j in plan.create] == ["2"]
    assert w.task_status("a")["attempts"] == 2
    assert w.task_phase("a") == "Running"


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    w = World.of(
        {
            "tasks": [
                step(
                    "a",
                    retry={
                        "limit": 5,
                        "backoff": {"initialSeconds": 10, "factor": 3, "maxSeconds": 50},
                    },
                )
            ]
        }
    )
    w.reconcile()
    delays = []
    for _ in range(4):
        w.fail("a")
        plan = w.reconcile()
        delays.append(plan.requeue_after)
        assert plan.requeue_after is not None
        w.advance(plan.requeue_after)
        w.reconcile()
    assert delays == [10, 30, 50, 50]


def test_exhausted_retries_degrade_the_pipeline_and_block_dependents() -> None:
    w = World.of(
        {
            "tasks": [
                step("a", retry={"limit": 1, "backoff": {"initialSeconds": 0}}),
                step("b", "a"),
                step("c", "b"),
                step("x"),
                step("y", "x"),
            ]
        }
    )
    w.reconcile()
    w.fail("a")
    w.reconcile()
    assert w.task_phase("a") == "Running"  # zero backoff: attempt 2 at once
    w.fail("a")
    plan = w.reconcile()
    assert w.task_phase("a") == "Failed"
    assert w.task_status("a")["attempts"] == 2
    assert w.task_phase("b") == "Blocked"
    assert w.task_phase("c") == "Blocked"
    assert w.phase == "Degraded"
    assert w.condition("Degraded")["status"] == "True"
    assert "a failed" in w.status["message"]
    assert plan.run_finished is None  # counted when it settles: branches still run
    assert {e.reason for e in plan.events} >= {"TaskFailed", "Degraded"}
    # The independent branch goes on (ContinueIndependent is the default).
    w.succeed("x")
    w.reconcile()
    assert "y" in w.active_tasks()
    w.succeed("y")
    plan = w.reconcile()
    assert w.task_phase("y") == "Succeeded"
    assert w.phase == "Degraded"
    assert w.status.get("finishedAt")  # nothing more can happen without a fix
    assert plan.run_finished == "Degraded" and w.status["firstResult"] == "Degraded"


def test_stop_all_starts_nothing_new_after_a_failure() -> None:
    w = World.of(
        {
            "failurePolicy": "StopAll",
            "tasks": [step("a", retry={"limit": 0}), step("x"), step("y", "x")],
        }
    )
    w.reconcile()
    w.fail("a")
    w.succeed("x")
    w.reconcile()
    assert w.task_phase("a") == "Failed"
    assert "y" not in w.active_tasks()
    assert w.task_phase("y") == "Pending"


def test_non_retryable_failure_kinds_fail_at_once() -> None:
    w = World.of({"tasks": [step("a", retry={"limit": 3, "retryOn": ["Evicted"]})]})
    w.reconcile()
    w.fail("a")
    w.reconcile()
    assert w.task_phase("a") == "Failed"


def test_deadline_exceeded_is_reported_with_the_jobs_own_words() -> None:
    w = World.of({"tasks": [step("a", retry={"limit": 0}, timeoutSeconds=5)]})
    w.reconcile()
    assert w.job_of("a")["spec"]["activeDeadlineSeconds"] == 5
    w.fail("a", reason="DeadlineExceeded", message="Job was active longer than specified deadline")
    w.reconcile()
    ts = w.task_status("a")
    assert ts["reason"] == "DeadlineExceeded"
    assert ts["message"] == "Job was active longer than specified deadline"


def _degrade() -> World:
    w = World.of(
        {"tasks": [step("ok"), step("bad", "ok", retry={"limit": 0}), step("after", "bad")]},
        tasks={},
    )
    w.pipeline["spec"]["tasks"][1] = {
        "name": "bad",
        "taskRef": {"name": "bad-task"},
        "dependsOn": ["ok"],
    }
    w.tasks["bad-task"] = {"spec": {**IMG, "command": ["false"], "retry": {"limit": 0}}}
    w.reconcile()
    w.succeed("ok")
    w.reconcile()
    w.fail("bad")
    w.reconcile()
    assert w.phase == "Degraded"
    return w


def test_fixing_the_failed_task_resumes_without_rerunning_what_succeeded() -> None:
    w = _degrade()
    w.tasks["bad-task"] = {"spec": {**IMG, "command": ["true"], "retry": {"limit": 0}}}
    plan = w.reconcile()
    assert [j["metadata"]["annotations"]["sluice.dev/task-name"] for j in plan.create] == ["bad"]
    assert w.task_status("bad")["attempts"] == 2
    assert w.task_phase("after") == "Pending"  # unblocked
    assert w.phase == "Running"
    assert any(e.reason == "DefinitionChanged" for e in plan.events)
    w.succeed("bad")
    w.reconcile()
    w.succeed("after")
    w.reconcile()
    assert w.phase == "Succeeded"
    assert w.task_status("ok")["attempts"] == 1


def test_fixed_task_gets_a_fresh_retry_budget() -> None:
    w = _degrade()
    w.tasks["bad-task"] = {
        "spec": {**IMG, "command": ["x"], "retry": {"limit": 1, "backoff": {"initialSeconds": 0}}}
    }
    w.reconcile()
    w.fail("bad")
    w.reconcile()
    assert w.task_phase("bad") == "Running"  # one retry of the new budget
    assert w.task_status("bad")["attempts"] == 3


def test_retry_annotation_retries_failed_tasks_once_per_value() -> None:
    w = _degrade()
    w.annotate("sluice.dev/retry", "1")
    plan = w.reconcile()
    assert len(plan.create) == 1
    assert w.status["handledRetry"] == "1"
    w.fail("bad")
    w.reconcile()
    assert w.task_phase("bad") == "Failed"  # the same value does not retry again
    w.annotate("sluice.dev/retry", "2")
    assert len(w.reconcile().create) == 1


def test_rerun_annotation_starts_a_fresh_run_of_every_task() -> None:
    w = diamond()
    w.reconcile()
    for t in "abcd":
        w.succeed(t)
        w.reconcile()
    assert w.phase == "Succeeded"
    w.annotate("sluice.dev/rerun", "again")
    plan = w.reconcile()
    assert w.status["run"] == 2
    assert w.phase == "Running"
    assert [j["metadata"]["labels"]["sluice.dev/run"] for j in plan.create] == ["2"]
    assert w.task_phase("d") == "Pending"
    assert any(e.reason == "RerunRequested" for e in plan.events)


def test_suspend_starts_nothing_new_but_lets_running_jobs_finish() -> None:
    w = diamond(suspend=True)
    w.reconcile()
    assert w.active_tasks() == set()
    w.edit_spec(suspend=False)
    w.reconcile()
    assert w.active_tasks() == {"a"}
    w.edit_spec(suspend=True)
    w.succeed("a")
    w.reconcile()
    assert w.task_phase("a") == "Succeeded"
    assert w.active_tasks() == set()
    assert w.condition("Progressing")["reason"] == "Suspended"


def test_pipeline_timeout_fails_the_run_and_stops_its_jobs() -> None:
    w = diamond(timeoutSeconds=60)
    w.stuck_after = 3600  # not the stuck-step look (core.stuck): the timeout's wake-up
    plan = w.reconcile()
    assert plan.requeue_after == 60
    w.advance(60)
    plan = w.reconcile()
    assert w.phase == "Failed"
    assert plan.delete == [w.created[0]]
    assert w.task_phase("a") == "Failed"
    assert w.task_phase("d") == "Skipped"
    assert w.condition("Succeeded")["reason"] == "Timeout"
    # Terminal: nothing restarts it but a rerun.
    assert w.reconcile().create == []


def test_a_job_deleted_by_someone_else_counts_as_a_failed_attempt() -> None:
    w = World.of({"tasks": [step("a", retry={"limit": 1, "backoff": {"initialSeconds": 0}})]})
    w.reconcile()
    del w.jobs[w.created[0]]
    plan = w.reconcile()
    assert w.task_status("a")["attempts"] == 2
    assert len(plan.create) == 1
    assert w.task_status("a")["phase"] == "Running"


def test_a_job_created_before_a_crash_is_adopted_not_duplicated() -> None:
    w = diamond()
    w.reconcile()
    # The status write was lost (the operator died right after creating the Job).
    w.pipeline.pop("status")
    plan = w.reconcile()
    assert plan.create == [] or all(j["metadata"]["name"] in w.jobs for j in plan.create)
    assert len(w.created) == 1
    assert w.task_phase("a") == "Running"
    assert w.task_status("a")["attempts"] == 1


def test_adopted_attempt_keeps_the_retry_budget_it_was_created_under() -> None:
    w = _degrade()
    saved = dict(w.pipeline["status"])
    w.annotate("sluice.dev/retry", "1")
    w.reconcile()  # attempt 2 created under retry base 1
    w.pipeline["status"] = saved  # ...but the status write was lost
    w.reconcile()
    assert w.task_status("bad")["retryBase"] == 1
    assert w.task_phase("bad") == "Running"


def test_cycle_fails_the_pipeline_naming_the_cycle() -> None:
    w = World.of({"tasks": [step("extract", "clean"), step("clean", "extract")]})
    plan = w.reconcile()
    assert w.phase == "Failed"
    assert "cycle: clean -> extract -> clean" in w.status["message"]
    assert plan.create == []
    assert any(e.reason == "InvalidSpec" and e.type == "Warning" for e in plan.events)
    assert w.condition("Succeeded")["reason"] == "InvalidSpec"


def test_unknown_dependency_and_missing_task_are_named() -> None:
    w = World.of({"tasks": [step("a", "ghost"), {"name": "b", "taskRef": {"name": "nope"}}]})
    w.reconcile()
    assert w.phase == "Failed"
    assert '"ghost"' in w.status["message"]
    w2 = World.of({"tasks": [{"name": "b", "taskRef": {"name": "nope"}}]})
    w2.reconcile()
    assert 'Task "nope", which does not exist' in w2.status["message"]
    # Applying the Task later lets the pipeline start.
    w2.tasks["nope"] = {"spec": dict(IMG)}
    w2.reconcile()
    assert w2.phase == "Running"


def test_invalid_spec_from_schema_errors_is_a_message_not_a_crash() -> None:
    w = World.of({"tasks": [{"name": "Bad_Name", "task": {"image": ""}}]})
    w.reconcile()
    assert w.phase == "Failed"
    assert "invalid spec" in w.status["message"]


def test_params_are_substituted_into_command_args_and_env() -> None:
    w = World.of(
        {
            "params": [{"name": "dataset", "value": "s3://x"}],
            "tasks": [
                {
                    "name": "train",
                    "taskRef": {"name": "train"},
                    "params": [{"name": "epochs", "value": "3"}],
                }
            ],
        },
        tasks={
            "train": {
                **IMG,
                "command": ["train", "$(params.dataset)"],
                "args": ["--epochs=$(params.epochs)"],
                "env": [{"name": "D", "value": "$(params.dataset)"}],
                "params": [{"name": "dataset"}, {"name": "epochs", "default": "1"}],
            }
        },
    )
    w.reconcile()
    c = w.job_of("train")["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["train", "s3://x"]
    assert c["args"] == ["--epochs=3"]
    assert c["env"] == [{"name": "D", "value": "s3://x"}]


def test_missing_param_value_is_an_invalid_spec() -> None:
    w = World.of(
        {
            "tasks": [
                {
                    "name": "t",
                    "task": {**IMG, "params": [{"name": "x"}], "command": ["$(params.x)"]},
                }
            ]
        }
    )
    w.reconcile()
    assert w.phase == "Failed"
    assert 'no value for parameter "x"' in w.status["message"]


def test_pod_template_is_merged_into_the_job_pod() -> None:
    w = World.of(
        {
            "tasks": [
                {
                    "name": "t",
                    "task": {
                        **IMG,
                        "podTemplate": {
                            "metadata": {"labels": {"sim.sluice.dev/outcome": "fail"}},
                            "spec": {
                                "nodeSelector": {"type": "kwok"},
                                "tolerations": [{"operator": "Exists"}],
                            },
                        },
                    },
                }
            ]
        }
    )
    w.reconcile()
    tpl = w.job_of("t")["spec"]["template"]
    assert tpl["metadata"]["labels"]["sim.sluice.dev/outcome"] == "fail"
    assert tpl["metadata"]["labels"]["sluice.dev/task"] == "t"
    assert tpl["spec"]["nodeSelector"] == {"type": "kwok"}


def test_ttl_deletes_finished_jobs_but_keeps_failed_ones_by_default() -> None:
    w = World.of(
        {
            "ttlSecondsAfterFinished": 30,
            "tasks": [step("a", retry={"limit": 1, "backoff": {"initialSeconds": 0}})],
        }
    )
    w.reconcile()
    w.fail("a")
    w.reconcile()
    w.succeed("a")
    plan = w.reconcile()
    assert w.phase == "Succeeded"
    assert plan.requeue_after == 30
    w.advance(30)
    plan = w.reconcile()
    assert len(plan.delete) == 1  # attempt 2 (succeeded); attempt 1 failed and is kept
    assert w.phase == "Succeeded"
    assert w.task_status("a")["phase"] == "Succeeded"  # status outlives the Jobs


def test_status_patch_clears_fields_that_went_away() -> None:
    w = World.of({"tasks": [step("a", retry={"limit": 1, "backoff": {"initialSeconds": 0}})]})
    w.reconcile()
    w.fail("a")
    w.reconcile()
    w.succeed("a")
    w.reconcile()
    assert w.phase == "Succeeded"
    w.annotate("sluice.dev/rerun", "1")
    plan = w.reconcile()
    assert plan.status is not None and plan.status["finishedAt"] is None


def test_editing_the_spec_mid_run_adds_new_tasks() -> None:
    w = diamond()
    w.reconcile()
    w.pipeline["spec"]["tasks"].append(step("e"))
    w.pipeline["metadata"]["generation"] += 1
    w.reconcile()
    assert w.active_tasks() == {"a", "e"}
    assert w.status["observedGeneration"] == 2


def test_the_words_of_a_failure_and_a_success_agree_with_the_status() -> None:
    # Issue 19: "TaskFailed ... (1 attempt(s), retry limit 0)" while the status said 2
    # attempts; "Degraded" before "TaskFailed"; "All 1 tasks succeeded."
    w = World.of({"tasks": [step("a", retry={"limit": 1, "backoff": {"initialSeconds": 0}})]})
    w.reconcile()
    w.fail("a")
    w.reconcile()
    w.reconcile()
    w.fail("a")
    plan = w.reconcile()
    assert w.task_status("a")["attempts"] == 2
    reasons = [e.reason for e in plan.events]
    assert reasons.index("TaskFailed") < reasons.index("Degraded")
    failed = next(e for e in plan.events if e.reason == "TaskFailed")
    assert "(attempt 2, retry limit 1)" in failed.message
    assert "ExitCode: exit code 3: " in failed.message

    w = World.of({"tasks": [step("a")]})
    w.reconcile()
    w.succeed("a")
    plan = w.reconcile()
    assert w.status["message"] == "The step succeeded."
    assert [e.message for e in plan.events if e.reason == "Succeeded"] == [
        "Run 1: its step succeeded."
    ]


def test_a_run_counts_once_and_a_success_after_a_fix_is_a_recovery() -> None:
    # Issue 19: Degraded, then Succeeded after a fix, counted two runs; a retry that
    # failed again added another Degraded.
    w = World.of({"tasks": [step("a", retry={"limit": 0})]})
    w.reconcile()
    w.fail("a")
    plans = [w.reconcile()]
    assert w.phase == "Degraded"
    w.annotate("sluice.dev/retry", "1")
    plans.append(w.reconcile())
    w.fail("a")  # the retry fails again
    plans.append(w.reconcile())
    assert w.phase == "Degraded"
    w.annotate("sluice.dev/retry", "2")
    plans.append(w.reconcile())
    w.succeed("a")
    plans.append(w.reconcile())
    plans.append(w.settle())
    assert w.phase == "Succeeded"
    assert [p.run_finished for p in plans if p.run_finished] == ["Degraded"]
    assert [p.run_recovered for p in plans].count(True) == 1
    reasons = [e.reason for p in plans for e in p.events]
    # "Recovered" only once the retried step has run and the run succeeded.
    assert reasons.count("Recovered") == 1
    assert reasons.index("Recovered") > reasons.index("Succeeded") > reasons.index("Resumed")
    w.annotate("sluice.dev/rerun", "1")  # a fresh run counts afresh
    again = [w.reconcile()]
    assert w.status["run"] == 2 and w.status.get("firstResult") is None
    w.succeed("a")
    again += [w.reconcile(), w.settle()]
    assert [p.run_finished for p in again if p.run_finished] == ["Succeeded"]
    assert not any(p.run_recovered for p in again)
