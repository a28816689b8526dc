"""Properties of the reconciler over random DAGs, outcomes and crashes."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.world import World


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[str, Any], list[int], int]:
    n = draw(st.integers(1, 12))
    names = [f"t{i}" for i in range(n)]
    tasks = []
    for i, name in enumerate(names):
        deps = draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=3)) if i else []
        limit = draw(st.integers(0, 2))
        tasks.append(
            {
                "name": name,
                "task": {"image": "x"},
                "dependsOn": deps,
                "retry": {"limit": limit, "backoff": {"initialSeconds": draw(st.integers(0, 5))}},
            }
        )
    spec: dict[str, Any] = {"tasks": tasks}
    if draw(st.booleans()):
        spec["maxParallel"] = draw(st.integers(1, 3))
    if draw(st.booleans()):
        spec["failurePolicy"] = "StopAll"
    choices = draw(st.lists(st.integers(0, 99), min_size=200, max_size=200))
    crash_every = draw(st.integers(0, 4))
    return spec, choices, crash_every


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_random_pipelines_respect_order_parallelism_and_attempt_uniqueness(
    scenario: tuple[dict[str, Any], list[int], int],
) -> None:
    spec, choices, crash_every = scenario
    w = World.of(spec)
    deps = {t["name"]: t["dependsOn"] for t in spec["tasks"]}
    limits = {t["name"]: t["retry"]["limit"] for t in spec["tasks"]}
    max_parallel = spec.get("maxParallel")
    succeeded: set[str] = set()
    saved_status: dict[str, Any] | None = None
    it = iter(choices)
    for tick in range(200):
        plan = w.reconcile()
        for job in plan.create:
            task = job["metadata"]["annotations"]["sluice.dev/task-name"]
            # Never started before its dependencies succeeded.
            assert set(deps[task]) <= succeeded, (task, deps[task], succeeded)
        active = w.active_tasks()
        if max_parallel is not None:
            assert len(active) <= max_parallel
        # Crash: the status write of this reconcile is lost now and then.
        if crash_every and tick % (crash_every + 1) == 0 and saved_status is not None:
            w.pipeline["status"] = saved_status
        saved_status = dict(w.pipeline.get("status") or {})
        if w.phase in ("Succeeded", "Failed") or (
            w.phase == "Degraded" and not active and plan.requeue_after is None
        ):
            break
        if active:
            task = sorted(active)[next(it, 0) % len(active)]
            if next(it, 50) < 70:
                w.succeed(task)
                succeeded.add(task)
            else:
                w.fail(task)
        elif plan.requeue_after is not None:
            w.advance(plan.requeue_after)
    names = [j["metadata"]["name"] for j in w.jobs.values()]
    assert len(names) == len(set(names))
    # No attempt beyond the retry policy: at most 1 + limit Jobs per task.
    per_task: dict[str, int] = {}
    for name in w.created:
        task = w.jobs[name]["metadata"]["annotations"]["sluice.dev/task-name"]
        per_task[task] = per_task.get(task, 0) + 1
    for task, count in per_task.items():
        assert count <= 1 + limits[task], (task, count)
    # Status agrees with the Jobs.
    w.settle()
    for t in w.status.get("tasks", []):
        if t["phase"] == "Succeeded":
            assert t["name"] in succeeded


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_garbage_specs_never_raise_and_always_explain(garbage: Any) -> None:
    w = World.of({})
    w.pipeline["spec"] = garbage
    try:
        w.reconcile()
    except Exception as e:  # pragma: no cover - the property is that this never happens
        raise AssertionError(f"reconcile raised {e!r} on {garbage!r}") from e
    assert w.phase == "Failed"
    assert w.status["message"]
