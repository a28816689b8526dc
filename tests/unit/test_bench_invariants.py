"""Invariants the operator's fast path relies on (see bench/README.md).

* The controller skips a wake-up whose inputs are those the last reconcile
  left behind (its own status write and its own new Jobs coming back through
  the watch). That is only right if reconcile is a fixpoint there: applying a
  plan and reconciling again at once must decide nothing new.
* The controller keeps `prepare(pipeline, tasks)` while the spec and Tasks
  stay the same and passes it to reconcile: the plan must be the same.
* kopf's per-event "essence" (a deep copy of every object, for change
  handlers) is switched off; that is only right while Sluice registers no
  change handlers (nor daemons/timers, which use the same diff).
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.core.reconcile import Plan, prepare, reconcile
from support.world import World


def _acts(plan: Plan) -> bool:
    return bool(plan.create or plan.delete or plan.status is not None or plan.events)


@st.composite
def _scenarios(draw: st.DrawFn) -> tuple[dict[str, Any], list[int], list[str]]:
    n = draw(st.integers(1, 10))
    names = [f"t{i}" for i in range(n)]
    tasks = []
    for i, name in enumerate(names):
        deps = draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=3)) if i else []
        tasks.append(
            {
                "name": name,
                "task": {"image": "x"},
                "dependsOn": deps,
                "retry": {
                    "limit": draw(st.integers(0, 2)),
                    "backoff": {"initialSeconds": draw(st.integers(0, 3))},
                },
            }
        )
    spec: dict[str, Any] = {"tasks": tasks}
    if draw(st.booleans()):
        spec["maxParallel"] = draw(st.integers(1, 3))
    if draw(st.booleans()):
        spec["failurePolicy"] = "StopAll"
    if draw(st.booleans()):
        spec["ttlSecondsAfterFinished"] = draw(st.integers(0, 5))
    choices = draw(st.lists(st.integers(0, 99), min_size=100, max_size=100))
    nudges = draw(st.lists(st.sampled_from(["none", "retry", "rerun", "edit"]), max_size=100))
    return spec, choices, nudges


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_scenarios())
def test_reconcile_decides_nothing_new_right_after_its_plan_is_applied(
    scenario: tuple[dict[str, Any], list[int], list[str]],
) -> None:
    spec, choices, nudges = scenario
    w = World.of(spec)
    it, nudge = iter(choices), iter(nudges)
    for tick in range(100):
        prepared = prepare(w.pipeline, w.tasks)
        with_prepared = reconcile(w.pipeline, w.tasks, list(w.jobs.values()), w.now, prepared)
        plan = w.reconcile()
        assert with_prepared == plan
        if _acts(plan):
            again = reconcile(w.pipeline, w.tasks, list(w.jobs.values()), w.now)
            assert not _acts(again), f"tick {tick}: {again}"
        action = next(nudge, "none")
        if action == "retry":
            w.annotate("sluice.dev/retry", str(tick))
        elif action == "rerun":
            w.annotate("sluice.dev/rerun", str(tick))
        elif action == "edit" and w.pipeline["spec"]["tasks"]:
            w.pipeline["spec"]["tasks"][0]["task"]["command"] = [str(tick)]
            w.pipeline["metadata"]["generation"] += 1
        active = sorted(w.active_tasks())
        if active:
            task = active[next(it, 0) % len(active)]
            if next(it, 50) < 70:
                w.succeed(task)
            else:
                w.fail(task)
        elif plan.requeue_after is not None:
            w.advance(plan.requeue_after)
        else:
            w.advance(1)


def test_sluice_registers_no_kopf_change_handlers_daemons_or_timers() -> None:
    from kubernetes.client import Configuration
    from prometheus_client import CollectorRegistry

    from sluice.app import App
    from sluice.settings import Settings

    registry = App(Settings(), CollectorRegistry(), Configuration()).kopf_registry
    assert registry._changing.get_all_handlers() == []
    assert registry._spawning.get_all_handlers() == []
    assert registry._watching.get_all_handlers()  # the event handlers are there
