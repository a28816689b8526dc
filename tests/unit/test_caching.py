"""Step caching wired into the reconciler, played out in the in-memory world."""

from __future__ import annotations

from typing import Any

from sluice.core.caching import CACHE_RESULTS_BYTES
from support.world import World

IMG = "busybox:1.36"


def cached_world(version: str | None = None, **cache: Any) -> World:
    task: dict[str, Any] = {
        "image": IMG,
        "params": [{"name": "lr"}],
        "args": ["--lr=$(params.lr)"],
        "results": [{"name": "model"}],
    }
    if version is not None:
        task["cacheVersion"] = version
    return World.of(
        {
            "params": [{"name": "lr", "value": "0.1"}],
            "cache": {"enabled": True, **cache},
            "tasks": [
                {
                    "name": "train",
                    "task": task,
                    "params": [{"name": "lr", "value": "$(params.lr)"}],
                },
                {
                    "name": "report",
                    "dependsOn": ["train"],
                    "cache": {"enabled": False},
                    "task": {"image": IMG, "args": ["$(tasks.train.results.model)"]},
                },
            ],
        }
    )


def first_run(w: World) -> None:
    w.reconcile()
    w.succeed("train", {"model": "s3://m/1"})
    w.reconcile()
    w.succeed("report")
    w.settle()
    assert w.phase == "Succeeded"


def rerun(w: World, value: str) -> None:
    w.pipeline["metadata"]["annotations"]["sluice.dev/rerun"] = value
    w.advance(60)


def test_a_cached_step_is_not_run_again_and_its_results_reach_dependents() -> None:
    w = cached_world()
    first_run(w)
    assert w.status["cache"][0]["step"] == "train"
    assert w.status["cache"][0]["results"] == {"model": "s3://m/1"}
    jobs = len(w.created)
    rerun(w, "r2")
    plan = w.reconcile()
    assert plan.cache_hits == 1 and plan.requeue_after == 0
    train = w.task_status("train")
    assert (train["phase"], train["reason"], train["message"]) == (
        "Succeeded",
        "Cached",
        "cached from run 1",
    )
    assert train["results"] == {"model": "s3://m/1"}
    w.reconcile()
    assert len(w.created) == jobs + 1  # report only
    job = w.job_of("report")
    main = job["spec"]["template"]["spec"]["containers"][0]
    assert main["args"] == ["s3://m/1"]


def test_a_changed_param_or_cache_version_misses() -> None:
    w = cached_world()
    first_run(w)
    rerun(w, "r2")
    w.pipeline["spec"]["params"][0]["value"] = "0.2"
    plan = w.reconcile()
    assert plan.cache_misses == 1 and plan.cache_hits == 0
    assert w.active_tasks() == {"train"}

    v = cached_world(version="1")
    first_run(v)
    rerun(v, "r2")
    v.pipeline["spec"]["tasks"][0]["task"]["cacheVersion"] = "2"
    plan = v.reconcile()
    assert plan.cache_misses == 1
    assert v.active_tasks() == {"train"}


def test_nocache_rerun_ignores_the_cache_but_remembers() -> None:
    w = cached_world()
    first_run(w)
    rerun(w, "nocache-1")
    plan = w.reconcile()
    assert w.status["ignoreCache"] is True
    assert plan.cache_misses == 1
    assert w.active_tasks() == {"train"}


def test_max_age_bounds_a_hit() -> None:
    w = cached_world(maxAgeSeconds=30)
    first_run(w)
    rerun(w, "r2")  # 60 s later
    plan = w.reconcile()
    assert plan.cache_misses == 1


def test_disabling_the_cache_drops_the_entries() -> None:
    w = cached_world()
    first_run(w)
    w.pipeline["spec"]["cache"] = {"enabled": False}
    w.reconcile()
    assert "cache" not in w.status


def test_the_cache_is_bounded_by_steps_and_bytes() -> None:
    assert CACHE_RESULTS_BYTES == 64 * 1024
    w = cached_world()
    first_run(w)
    for i in range(5):
        rerun(w, f"r{i}")
        w.pipeline["spec"]["params"][0]["value"] = str(i)
        w.reconcile()
        w.succeed("train", {"model": f"s3://m/{i}"})
        w.reconcile()
        w.succeed("report")
        w.settle()
    assert len(w.status["cache"]) == 2  # min(100, 2 x one cached step)
    assert w.status["cache"][0]["results"] == {"model": "s3://m/4"}
