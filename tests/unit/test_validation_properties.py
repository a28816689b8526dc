"""Properties of the validation and the reconciler over malformed and random specs:
never an unhandled exception, every rejection has a message, the operator says what the
webhook says, and what validation accepts really runs."""

from __future__ import annotations

import copy
import itertools
import json
import re
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sluice.core import naming, validation
from sluice.core.validation import check_pipeline, check_task, parse_quantity
from support.world import World

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=25,
)

# Names: mostly valid DNS labels from a small pool (so dependencies hit and miss), now and
# then something no schema would let through.
NAMES = st.sampled_from(["a", "b", "c", "extract", "clean", "load", "t-1", "x" * 63]) | st.text(
    max_size=6
)
IMAGES = st.sampled_from(
    ["busybox:1.36", "ghcr.io/acme/x:1", "Busybox", "busybox:", "a b", "x", "localhost:5000/y"]
) | st.text(max_size=8)
PARAM_NAMES = st.sampled_from(["p", "q", "data.set", "r-1"]) | st.text(max_size=4)
TEXT_WITH_REFS = st.lists(
    st.sampled_from(["$(params.p)", "$(params.q)", "$(params.", "$(params.9)", "x", "ü✓", ""])
    | st.text(max_size=5),
    max_size=4,
).map("".join)
QUANTITIES = st.sampled_from(["1", "500m", "1Gi", "2", "-1", "1x", "1e3", ""]) | st.integers(-5, 5)


@st.composite
def task_specs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"image": draw(IMAGES)}
    if draw(st.booleans()):
        spec["command"] = draw(st.lists(TEXT_WITH_REFS, max_size=3))
    if draw(st.booleans()):
        spec["params"] = [
            {"name": n, **({"default": "d"} if draw(st.booleans()) else {})}
            for n in draw(st.lists(PARAM_NAMES, max_size=3, unique=True))
        ]
    if draw(st.booleans()):
        spec["env"] = draw(
            st.lists(
                st.fixed_dictionaries(
                    {"name": st.sampled_from(["A", "B", "A=B", ""]) | st.text(max_size=3)},
                    optional={
                        "value": TEXT_WITH_REFS | st.integers(),
                        "valueFrom": JSON,
                        "valeu": st.just("x"),
                    },
                )
                | JSON,
                max_size=3,
            )
        )
    if draw(st.booleans()):
        spec["resources"] = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "limits": st.dictionaries(st.sampled_from(["cpu", "memory"]), QUANTITIES),
                    "requests": st.dictionaries(st.sampled_from(["cpu", "memory"]), QUANTITIES),
                    "limit": JSON,
                },
            )
        )
    if draw(st.booleans()):
        spec["podTemplate"] = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "metadata": st.fixed_dictionaries(
                        {}, optional={"labels": st.dictionaries(st.text(max_size=5), JSON)}
                    )
                    | JSON,
                    "spec": st.dictionaries(
                        st.sampled_from(["nodeSelector", "volumes", "restartPolicy", "x"]), JSON
                    )
                    | JSON,
                },
            )
        )
    if draw(st.booleans()):
        spec[draw(st.sampled_from(["imagePullPolicy", "timeoutSeconds", "retry"]))] = draw(JSON)
    return spec


@st.composite
def plausible_tasks(draw: st.DrawFn) -> dict[str, Any]:
    """A task that is valid more often than not."""
    declared = draw(st.lists(st.sampled_from(["p", "q", "data.set"]), max_size=3, unique=True))
    refs = [f"$(params.{n})" for n in declared]
    spec: dict[str, Any] = {
        "image": draw(st.sampled_from(["busybox:1.36", "ghcr.io/acme/x:1", "x"])),
        "command": ["run", *draw(st.lists(st.sampled_from(refs or ["x"]), max_size=2))],
        "params": [{"name": n, "default": "d"} for n in declared],
    }
    if draw(st.booleans()):
        spec["env"] = [{"name": "E", "value": draw(st.sampled_from(["v", "ü✓", *refs]))}]
    if draw(st.booleans()):
        spec["resources"] = {"requests": {"cpu": "500m"}, "limits": {"cpu": "1"}}
    return spec


@st.composite
def pipeline_specs(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    plausible = draw(st.booleans())
    if plausible:
        pool = ["a", "b", "c", "extract", "clean", "load", "t-1", "x" * 63]
        names = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=6, unique=True))
    else:
        names = draw(st.lists(NAMES, min_size=1, max_size=6))
    steps = []
    for i, name in enumerate(names):
        step: dict[str, Any] = {"name": name}
        if plausible:
            earlier = names[:i]
            deps = (
                draw(st.lists(st.sampled_from(earlier), max_size=2, unique=True)) if earlier else []
            )
            if draw(st.integers(0, 9)) == 0:
                deps.append(draw(NAMES))  # now and then a cycle or an unknown name
        else:
            deps = draw(st.lists(NAMES, max_size=3))
        if deps:
            step["dependsOn"] = deps
        if draw(st.booleans()):
            step["task"] = draw(plausible_tasks() if plausible else task_specs())
        else:
            refs = ["ta", "tb"] if plausible and draw(st.integers(0, 5)) else ["ta", "tb", "x"]
            step["taskRef"] = {"name": draw(st.sampled_from(refs))}
        if plausible and draw(st.booleans()):
            step["params"] = [
                {"name": n, "value": draw(st.sampled_from(["v", "$(params.p)", "ü✓"]))}
                for n in draw(st.lists(st.sampled_from(["p", "q"]), max_size=2, unique=True))
            ]
        elif draw(st.booleans()):
            step["params"] = [
                {"name": n, "value": draw(TEXT_WITH_REFS)}
                for n in draw(st.lists(PARAM_NAMES, max_size=2, unique=True))
            ]
        steps.append(step)
    spec: dict[str, Any] = {"tasks": steps}
    if plausible:
        spec["params"] = [{"name": "p", "value": "v"}]
    elif draw(st.booleans()):
        spec["params"] = [
            {"name": n, "value": "v"} for n in draw(st.lists(PARAM_NAMES, max_size=3, unique=True))
        ]
    ta = draw(plausible_tasks() if plausible else task_specs())
    tasks = {"ta": {"spec": ta}, "tb": {"spec": {"image": "busybox:1.36"}}}
    return spec, tasks


@st.composite
def corrupted(draw: st.DrawFn) -> Any:
    """A random pipeline with one random subtree replaced by random JSON."""
    spec, _ = draw(pipeline_specs())
    spec = copy.deepcopy(spec)
    node: Any = spec
    for _ in range(draw(st.integers(0, 4))):
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node)))
            if draw(st.booleans()):
                node[key] = draw(JSON)
                break
            node = node[key]
        elif isinstance(node, list) and node:
            i = draw(st.integers(0, len(node) - 1))
            if draw(st.booleans()):
                node[i] = draw(JSON)
                break
            node = node[i]
    return spec


def _assert_well_formed(report: validation.Report) -> None:
    for f in report.findings:
        assert f.severity in ("error", "warning")
        assert isinstance(f.message, str) and f.message.strip(), f
        assert len(f.message) < 1200, f.message
        assert "\n" not in f.message
    if report.errors:
        message = report.message()
        assert message.startswith(f"Invalid {report.kind}: ") and message.endswith(".")


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(JSON)
def test_garbage_never_raises_and_every_rejection_has_a_message(garbage: Any) -> None:
    for report in (check_pipeline(garbage, name="p", tasks={}), check_task(garbage)):
        _assert_well_formed(report)
        if not isinstance(garbage, dict):
            assert report.errors


@SETTINGS
@given(corrupted())
def test_corrupted_pipelines_never_raise_in_validation_or_reconcile(spec: Any) -> None:
    report = check_pipeline(spec, name="p", tasks={})
    _assert_well_formed(report)
    w = World.of({})
    w.pipeline["spec"] = spec
    w.reconcile()
    if report.errors:
        assert w.phase == "Failed"
        assert w.status["message"] == report.message()


@SETTINGS
@given(task_specs())
def test_random_tasks_never_raise(spec: dict[str, Any]) -> None:
    _assert_well_formed(check_task(spec))
    _assert_well_formed(check_task(spec, size=len(json.dumps(spec))))


@SETTINGS
@given(pipeline_specs(), st.sampled_from(["p", "a.b", "x" * 253, "Bad_Name", ""]))
def test_the_operator_agrees_with_the_webhook_and_what_passes_runs(
    case: tuple[dict[str, Any], dict[str, dict[str, Any]]], name: str
) -> None:
    spec, tasks = case
    report = check_pipeline(spec, name=name, tasks=tasks)
    _assert_well_formed(report)
    w = World.of(spec, tasks={k: v["spec"] for k, v in tasks.items()}, name=name)
    plan = w.reconcile()

    event("refused" if report.errors else "accepted")
    if report.errors:
        # Nothing ran yet, so every problem still matters: the operator's message is the
        # full report, and the webhook's refusal (own errors only) is a part of it.
        assert w.phase == "Failed"
        assert w.status["message"] == report.message()
        refusal = report.refusal()
        if refusal is not None and not any(f.external for f in report.errors):
            assert refusal == w.status["message"]
        assert plan.create == []
        assert any(e.reason == "InvalidSpec" and e.message == report.message() for e in plan.events)
        return

    # Validation passed: the pipeline really runs to the end, every Job valid.
    for _ in range(len(spec["tasks"]) + 2):
        for job in list(w.jobs.values()):
            assert naming.is_dns_label(job["metadata"]["name"])
            for value in job["metadata"]["labels"].values():
                assert naming.is_label_value(value)
            if not job["status"].get("conditions"):
                w.succeed(job["metadata"]["annotations"]["sluice.dev/task-name"])
        w.reconcile()
    assert w.phase == "Succeeded", w.status


@SETTINGS
@given(pipeline_specs())
def test_a_named_cycle_is_a_real_cycle(case: tuple[dict[str, Any], Any]) -> None:
    spec, _ = case
    report = check_pipeline(spec)
    if report.pipeline is None:
        return
    deps = {t.name: set(t.depends_on) for t in report.pipeline.tasks}
    cycles = [f.message for f in report.errors if f.message.startswith("cycle: ")]
    for message in cycles:
        names = message.removeprefix("cycle: ").split(" -> ")
        assert names[0] == names[-1] and len(names) >= 3
        for task, dep in itertools.pairwise(names):
            assert dep in deps[task]
    # ... and a graph without a named cycle has a topological order.
    if not cycles:
        order: list[str] = []
        pending = {n: {d for d in ds if d in deps and d != n} for n, ds in deps.items()}
        while pending:
            ready = [n for n, ds in pending.items() if not ds - set(order)]
            assert ready, "a cycle nobody named"
            order += ready
            for n in ready:
                del pending[n]


@SETTINGS
@given(
    st.text(max_size=20) | st.from_regex(r"[+-]?[0-9.]{0,6}([eE][+-]?[0-9]{0,12}|[numkMGTPE]i?)?")
)
def test_quantities_never_raise(text: str) -> None:
    value = parse_quantity(text)
    if value is not None:
        assert re.fullmatch(r"[+-]?[0-9.]+.*", text)
