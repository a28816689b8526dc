"""`when` and `finally` in the reconciler, played out in the in-memory world."""

from __future__ import annotations

from typing import Any

from support.world import World

IMG = "busybox:1.36"
NO_RETRY = {"limit": 0}


def step(name: str, *deps: str, **extra: Any) -> dict[str, Any]:
    task = {"image": IMG, **extra.pop("task", {})}
    return {"name": name, "task": task, "dependsOn": list(deps), "retry": NO_RETRY, **extra}


def env_of(w: World, task: str) -> dict[str, str]:
    container = w.job_of(task)["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def gated(threshold: str) -> World:
    return World.of(
        {
            "params": [{"name": "score", "value": threshold}],
            "tasks": [
                step("train"),
                step("deploy", "train", when="double(params.score) >= 0.8"),
                step("report", "deploy"),
            ],
        }
    )


def test_a_false_when_skips_the_step_and_the_run_still_succeeds() -> None:
    w = gated("0.5")
    w.reconcile()
    w.succeed("train")
    plan = w.reconcile()
    deploy = w.task_status("deploy")
    assert deploy["phase"] == "Skipped"
    assert deploy["reason"] == "WhenFalse"
    assert 'when "double(params.score) >= 0.8" is false' in deploy["message"]
    assert 'params.score = "0.5"' in deploy["message"]
    assert any(e.reason == "TaskSkipped" for e in plan.events)
    # Skipped counts as done for ordering: report (dependsOn deploy) runs.
    assert w.active_tasks() == {"report"}
    assert w.status["progress"] == "2/3"
    w.succeed("report")
    w.reconcile()
    assert w.phase == "Succeeded"
    assert w.status["progress"] == "3/3"
    assert "1 skipped" in w.status["message"]
    assert not any(j.endswith("deploy-1-1") for j in w.created)


def test_a_true_when_runs_the_step() -> None:
    w = gated("0.9")
    w.reconcile()
    w.succeed("train")
    w.reconcile()
    assert w.active_tasks() == {"deploy"}


def test_a_when_on_results_and_a_step_using_a_skipped_steps_results() -> None:
    w = World.of(
        {
            "tasks": [
                step("evaluate", task={"results": [{"name": "auc"}]}),
                step(
                    "deploy",
                    when="double(tasks.evaluate.results.auc) >= 0.8",
                    task={"results": [{"name": "url"}]},
                ),
                step("notify", task={"args": ["$(tasks.deploy.results.url)"]}),
            ]
        }
    )
    w.reconcile()
    assert w.active_tasks() == {"evaluate"}  # deploy and notify wait: implicit dependencies
    w.task_status("evaluate")["results"] = {"auc": "0.61"}  # as the results helper records
    w.succeed("evaluate")
    w.reconcile()
    assert w.task_phase("deploy") == "Skipped"
    assert 'tasks.evaluate.results.auc = "0.61"' in w.task_status("deploy")["message"]
    notify = w.task_status("notify")
    assert (notify["phase"], notify["reason"]) == ("Skipped", "UpstreamSkipped")
    assert w.phase == "Succeeded"


def test_results_are_substituted_into_the_next_job() -> None:
    w = World.of(
        {
            "tasks": [
                step("train", task={"results": [{"name": "uri"}]}),
                step("register", task={"args": ["--model=$(tasks.train.results.uri)"]}),
            ]
        }
    )
    w.reconcile()
    w.task_status("train")["results"] = {"uri": "s3://m/$(HOME)"}
    w.succeed("train")
    w.reconcile()
    args = w.job_of("register")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["--model=s3://m/$$(HOME)"]  # the kubelet gives back exactly the result


def test_a_when_that_errs_fails_the_step_with_the_cel_error() -> None:
    w = World.of(
        {
            "params": [{"name": "score", "value": "abc"}],
            "tasks": [step("deploy", when="double(params.score) > 0.5"), step("after", "deploy")],
        }
    )
    w.reconcile()
    deploy = w.task_status("deploy")
    assert (deploy["phase"], deploy["reason"]) == ("Failed", "WhenError")
    assert "double(params.score) > 0.5" in deploy["message"]
    assert w.task_phase("after") == "Blocked"
    assert w.phase == "Degraded"
    assert not w.created


# ---------------------------------------------------------------------------- finally


def finally_world(*main: dict[str, Any], **spec: Any) -> World:
    cleanup = step(
        "cleanup",
        task={
            "env": [
                {"name": "RUN", "value": "$(tasks.status)"},
                {"name": "TRAIN", "value": "$(tasks.train.status)"},
            ]
        },
    )
    return World.of({"tasks": list(main) or [step("train")], "finally": [cleanup], **spec})


def test_finally_runs_after_success_and_the_run_waits_for_it() -> None:
    w = finally_world()
    w.reconcile()
    assert w.active_tasks() == {"train"}
    assert w.task_phase("cleanup") == "Pending"
    w.succeed("train")
    w.reconcile()
    assert w.active_tasks() == {"cleanup"}
    assert env_of(w, "cleanup") == {"RUN": "Succeeded", "TRAIN": "Succeeded"}
    assert w.phase == "Running"
    assert w.status["finallyFor"] == "Succeeded"
    assert w.status["progress"] == "1/2"
    w.succeed("cleanup")
    plan = w.reconcile()
    assert w.phase == "Succeeded"
    assert plan.run_finished == "Succeeded"
    assert w.status["progress"] == "2/2"


def test_finally_sees_degraded_and_a_failed_finally_step_degrades_the_run() -> None:
    w = finally_world()
    w.reconcile()
    w.fail("train")
    w.reconcile()
    assert w.phase == "Degraded"
    assert w.active_tasks() == {"cleanup"}
    assert env_of(w, "cleanup") == {"RUN": "Degraded", "TRAIN": "Failed"}
    assert "finally: 1 running" in w.status["message"]
    assert w.condition("Progressing")["status"] == "True"
    w.succeed("cleanup")
    w.reconcile()
    assert w.phase == "Degraded"
    assert w.status.get("finishedAt")

    ok = finally_world()
    ok.reconcile()
    ok.succeed("train")
    ok.reconcile()
    ok.fail("cleanup")
    ok.reconcile()
    assert ok.phase == "Degraded"
    assert "Finally task cleanup failed" in ok.status["message"]


def test_a_recovered_run_runs_its_finally_steps_again_with_the_new_status() -> None:
    w = finally_world()
    w.reconcile()
    w.fail("train")
    w.reconcile()
    w.succeed("cleanup")
    w.reconcile()
    assert env_of(w, "cleanup")["RUN"] == "Degraded"
    w.annotate("sluice.dev/retry", "1")
    w.reconcile()
    assert w.task_phase("cleanup") == "Pending"
    assert "finallyFor" not in w.status
    w.succeed("train")
    w.reconcile()
    assert w.job_of("cleanup")["metadata"]["labels"]["sluice.dev/attempt"] == "2"
    assert env_of(w, "cleanup")["RUN"] == "Succeeded"
    w.succeed("cleanup")
    plan = w.reconcile()
    assert w.phase == "Succeeded"
    assert plan.run_recovered
    assert len(w.created) == len(set(w.created)) == 4  # never two Jobs for one attempt


def test_finally_runs_after_a_timeout_and_is_exempt_from_it() -> None:
    w = finally_world(step("train"), timeoutSeconds=60)
    w.reconcile()
    w.advance(61)
    w.reconcile()
    assert w.task_phase("train") == "Failed"
    assert w.phase == "Failed"
    assert w.condition("Succeeded")["reason"] == "Timeout"
    assert w.active_tasks() == {"cleanup"}
    assert env_of(w, "cleanup")["RUN"] == "Timeout"
    assert not w.status.get("finishedAt")
    w.advance(600)
    w.reconcile()
    assert w.active_tasks() == {"cleanup"}  # the run's deadline does not stop it
    w.succeed("cleanup")
    w.reconcile()
    assert w.phase == "Failed"
    assert w.status.get("finishedAt")


def test_finally_steps_order_among_themselves_and_use_when() -> None:
    w = World.of(
        {
            "tasks": [step("train")],
            "finally": [
                step("alert", when="tasks.status == 'Degraded'"),
                step("cleanup", "alert"),
            ],
        }
    )
    w.reconcile()
    w.succeed("train")
    w.reconcile()
    assert w.task_phase("alert") == "Skipped"
    assert w.active_tasks() == {"cleanup"}
    w.succeed("cleanup")
    plan = w.reconcile()
    assert w.phase == "Succeeded"
    assert w.status["message"] == "2 of 3 steps succeeded, 1 skipped."
    assert "Run 1: 2 of 3 steps succeeded, 1 skipped." in [e.message for e in plan.events]


def test_a_suspended_pipeline_does_not_start_finally_steps() -> None:
    w = finally_world(suspend=True)
    w.reconcile()
    assert not w.created


# ---------------------------------------------------------------------------- validation


def test_a_param_used_only_in_a_when_is_not_reported_unused() -> None:
    from sluice.core.validation import check_pipeline

    spec = {
        "params": [{"name": "score", "value": "0.9"}],
        "tasks": [step("deploy", when="double(params.score) >= 0.8")],
    }
    report = check_pipeline(spec, name="p", tasks={})
    assert not report.findings


def test_an_invalid_when_fails_the_pipeline_in_the_operator_too() -> None:
    w = World.of({"tasks": [step("deploy", when="double(params.scroe) >= 0.8")]})
    w.reconcile()
    assert w.phase == "Failed"
    assert "unknown variable params.scroe" in w.status["message"]
    assert not w.created


def test_under_stop_all_a_failure_still_lets_finally_run_with_degraded() -> None:
    w = finally_world(step("train"), step("other"), failurePolicy="StopAll", maxParallel=1)
    w.reconcile()
    w.fail("train")
    w.reconcile()
    assert w.task_phase("other") == "Pending"
    assert env_of(w, "cleanup")["RUN"] == "Degraded"
    assert w.phase == "Degraded"


# ---------------------------------------------------------------------------- property

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def flows(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, bool]]:
    n = draw(st.integers(1, 6))
    steps, fails = [], {}
    for i in range(n):
        deps = (
            draw(st.lists(st.sampled_from([f"s{j}" for j in range(i)]), unique=True)) if i else []
        )
        extra: dict[str, Any] = {}
        if draw(st.booleans()):
            extra["when"] = f"params.go{i} == 'yes'"
        steps.append(step(f"s{i}", *deps, **extra))
        fails[f"s{i}"] = draw(st.booleans()) and draw(st.booleans())
    params = [{"name": f"go{i}", "value": draw(st.sampled_from(["yes", "no"]))} for i in range(n)]
    spec = {"params": params, "tasks": steps, "finally": [step("fin")]}
    return spec, fails


@settings(max_examples=40, deadline=None)
@given(flows())
def test_every_run_settles_and_runs_its_finally_step_exactly_once(
    case: tuple[dict[str, Any], dict[str, bool]],
) -> None:
    spec, fails = case
    w = World.of(spec)
    for _ in range(40):
        w.reconcile()
        active = w.active_tasks()
        if not active:
            break
        for task in sorted(active):
            if fails.get(task):
                w.fail(task)
            else:
                w.succeed(task)
    phases = {t["name"]: t["phase"] for t in w.status["tasks"]}
    assert w.phase in ("Succeeded", "Degraded")
    assert w.status.get("finishedAt")
    assert phases["fin"] == "Succeeded"
    assert sum(1 for j in w.created if "-fin-" in j) == 1
    assert w.status["finallyFor"] == ("Succeeded" if w.phase == "Succeeded" else "Degraded")
    skipped = {n for n, p in phases.items() if p == "Skipped"}
    assert not any(j.split("-")[1] in skipped for j in w.created)
    done = sum(1 for p in phases.values() if p in ("Succeeded", "Skipped"))
    assert w.status["progress"] == f"{done}/{len(phases)}"
    assert (w.phase == "Succeeded") == all(p in ("Succeeded", "Skipped") for p in phases.values())


def test_a_step_param_and_a_task_ref_can_carry_the_run_status() -> None:
    w = World.of(
        {
            "tasks": [step("train")],
            "finally": [
                {
                    "name": "notify",
                    "taskRef": {"name": "notifier"},
                    "params": [
                        {"name": "outcome", "value": "$(tasks.status)/$(tasks.train.status)"}
                    ],
                }
            ],
        },
        tasks={
            "notifier": {
                "image": IMG,
                "command": ["notify", "--outcome", "$(params.outcome)"],
                "params": [{"name": "outcome"}],
            }
        },
    )
    w.reconcile()
    w.fail("train")
    w.reconcile()
    command = w.job_of("notify")["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command == ["notify", "--outcome", "Degraded/Failed"]
