"""`kubectl sluice get`, `list`, `get -w` lines and `graph`: layouts against golden files.

The goldens live in tests/unit/golden/kubectl-sluice/ (ANSI escapes written as `\\e`, so a
diff is readable). After a deliberate change: SLUICE_UPDATE_GOLDEN=1 pytest this file,
then read the diff.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sluice.kubectl_sluice import render

GOLDEN = Path(__file__).parent / "golden" / "kubectl-sluice"
NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
COLOR = render.Style(color=True)


def _t(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pipeline(
    name: str,
    steps: list[tuple[str, list[str]]],
    status: dict[str, dict[str, Any]],
    **top: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Pipeline",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "creationTimestamp": _t(600),
            "generation": 1,
        },
        "spec": {"tasks": [{"name": n, "dependsOn": d, "task": {"image": "x"}} for n, d in steps]},
        "status": {
            "observedGeneration": 1,
            "tasks": [{"name": n, **s} for n, s in status.items()],
            **top,
        },
    }


def diamond() -> dict[str, Any]:
    return _pipeline(
        "diamond",
        [
            ("extract", []),
            ("clean", ["extract"]),
            ("profile", ["extract"]),
            ("load", ["clean", "profile"]),
        ],
        {
            "extract": {
                "phase": "Succeeded",
                "attempts": 1,
                "job": "diamond-extract-1-1-a1b2c",
                "startedAt": _t(120),
                "finishedAt": _t(110),
            },
            "clean": {
                "phase": "Running",
                "attempts": 1,
                "job": "diamond-clean-1-1-d3e4f",
                "startedAt": _t(100),
            },
            "profile": {
                "phase": "Retrying",
                "attempts": 1,
                "job": "diamond-profile-1-1-g5h6i",
                "startedAt": _t(100),
                "nextRetryAt": _t(-8),
                "reason": "Failed",
                "message": "exit code 1",
            },
            "load": {"phase": "Pending"},
        },
        phase="Running",
        run=1,
        progress="1/4",
        startedAt=_t(120),
        message="1 running, 1 waiting to retry, 1 of 4 done.",
    )


def fan_out() -> dict[str, Any]:
    shards = [f"shard-{i:02d}" for i in range(1, 21)]
    status: dict[str, dict[str, Any]] = {
        "split": {
            "phase": "Succeeded",
            "attempts": 1,
            "job": "fan-split-1-1-zz9",
            "startedAt": _t(300),
            "finishedAt": _t(290),
        },
    }
    for i, s in enumerate(shards):
        if i < 12:
            status[s] = {
                "phase": "Succeeded",
                "attempts": 1,
                "job": f"fan-{s}-1-1-k{i:02d}",
                "startedAt": _t(280),
                "finishedAt": _t(270 - i),
            }
        else:
            status[s] = {
                "phase": "Running",
                "attempts": 1,
                "job": f"fan-{s}-1-1-k{i:02d}",
                "startedAt": _t(250),
            }
    status["merge"] = {"phase": "Pending"}
    return _pipeline(
        "fan",
        [("split", []), *[(s, ["split"]) for s in shards], ("merge", shards)],
        status,
        phase="Running",
        run=3,
        progress="13/22",
        startedAt=_t(300),
        message="8 running, 13 of 22 done.",
    )


def degraded() -> dict[str, Any]:
    return _pipeline(
        "nightly",
        [
            ("load", []),
            ("publish", ["load"]),
            ("notify", ["publish"]),
            ("audit", []),
            ("report", ["audit", "notify"]),
        ],
        {
            "load": {
                "phase": "Failed",
                "attempts": 3,
                "job": "nightly-load-1-3-q1w2e",
                "startedAt": _t(200),
                "finishedAt": _t(150),
                "reason": "BackoffLimitExceeded",
                "message": "exit code 3",
            },
            "publish": {
                "phase": "Blocked",
                "reason": "UpstreamFailed",
                "message": "an upstream task failed",
            },
            "notify": {
                "phase": "Blocked",
                "reason": "UpstreamFailed",
                "message": "an upstream task failed",
            },
            "audit": {
                "phase": "Succeeded",
                "attempts": 1,
                "job": "nightly-audit-1-1-r4t5y",
                "startedAt": _t(200),
                "finishedAt": _t(198),
            },
            "report": {
                "phase": "Blocked",
                "reason": "UpstreamFailed",
                "message": "an upstream task failed",
            },
        },
        phase="Degraded",
        run=1,
        progress="1/5",
        startedAt=_t(200),
        finishedAt=_t(150),
        message="Task load failed past the retry budget; 3 blocked. Fix the task, or annotate "
        "sluice.dev/retry=<new value> to retry.",
    )


def long_message() -> dict[str, Any]:
    words = "the training data for this run is missing its label column; " * 4
    return _pipeline(
        "churn-model-with-a-rather-long-name",
        [("ingest", []), ("train-gradient-boosted-trees-with-early-stopping", ["ingest"])],
        {
            "ingest": {
                "phase": "Succeeded",
                "attempts": 1,
                "job": "churn-ingest-1-1-aaaaa",
                "startedAt": _t(500),
                "finishedAt": _t(490),
            },
            "train-gradient-boosted-trees-with-early-stopping": {
                "phase": "Failed",
                "attempts": 1,
                "job": "churn-model-with-a-rath-train-1-1-bbbbb",
                "startedAt": _t(490),
                "finishedAt": _t(30),
                "reason": "OOMKilled",
                "message": "container main:\n" + words,
            },
        },
        phase="Degraded",
        run=12,
        progress="1/2",
        startedAt=_t(500),
        finishedAt=_t(30),
        message="Task train-gradient-boosted-trees-with-early-stopping failed past the retry "
        "budget. Fix the task, or annotate sluice.dev/retry=<new value> to retry.",
    )


def when_and_finally() -> dict[str, Any]:
    p = _pipeline(
        "churn",
        [("evaluate", []), ("deploy", ["evaluate"]), ("announce", ["deploy"])],
        {
            "evaluate": {
                "phase": "Succeeded",
                "attempts": 1,
                "job": "churn-evaluate-1-1-a1b2c",
                "startedAt": _t(90),
                "finishedAt": _t(80),
            },
            "deploy": {
                "phase": "Skipped",
                "finishedAt": _t(80),
                "reason": "WhenFalse",
                "message": 'when "double(tasks.evaluate.results.auc) >= 0.8" is false; it saw '
                'tasks.evaluate.results.auc = "0.61"',
            },
            "announce": {
                "phase": "Skipped",
                "finishedAt": _t(80),
                "reason": "UpstreamSkipped",
                "message": 'it uses results of "deploy", which was skipped',
            },
            "notify": {
                "phase": "Running",
                "attempts": 1,
                "job": "churn-notify-1-1-d3e4f",
                "startedAt": _t(70),
            },
            "cleanup": {"phase": "Pending"},
        },
        phase="Running",
        run=1,
        progress="3/5",
        startedAt=_t(90),
        finallyFor="Succeeded",
        message="The main tasks succeeded; finally: 1 running.",
    )
    p["spec"]["finally"] = [
        {"name": "notify", "task": {"image": "x"}},
        {"name": "cleanup", "dependsOn": ["notify"], "task": {"image": "x"}},
    ]
    return p


CASES = {
    "diamond": diamond,
    "when-and-finally": when_and_finally,
    "fan-out-20": fan_out,
    "degraded": degraded,
    "long-message": long_message,
}


def _check(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    shown = text.replace("\x1b", "\\e")
    if os.environ.get("SLUICE_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(shown)
    assert path.exists(), f"no golden file {path}: run with SLUICE_UPDATE_GOLDEN=1"
    assert shown == path.read_text(), f"{name} differs from {path}"


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("style", ["plain", "color"])
def test_get_matches_its_golden_output(case: str, style: str) -> None:
    v = render.view(CASES[case]())
    lines = render.render_get(v, NOW, COLOR if style == "color" else render.PLAIN)
    _check(f"get-{case}-{style}", "\n".join(lines) + "\n")


def test_plain_output_has_no_escape_codes_and_colour_differs_only_by_them() -> None:
    for make in CASES.values():
        v = render.view(make())
        plain = render.render_get(v, NOW)
        colored = render.render_get(v, NOW, COLOR)
        assert not any("\x1b" in line for line in plain)
        assert [render._ANSI.sub("", line) for line in colored] == plain


def test_a_diamond_nests_single_parent_steps_and_names_the_parents_of_a_join() -> None:
    rows = render.layout(render.view(diamond()).steps)
    assert [(r.prefix, r.step.name, r.joins) for r in rows] == [
        ("", "extract", ()),
        ("├─", "clean", ()),
        ("└─", "profile", ()),
        ("", "load", ("clean", "profile")),
    ]


def test_a_fan_out_of_20_lists_every_shard_once_under_its_parent() -> None:
    rows = render.layout(render.view(fan_out()).steps)
    assert len(rows) == 22
    assert [r.prefix for r in rows[1:21]] == ["├─"] * 19 + ["└─"]
    merge = rows[-1]
    assert merge.step.name == "merge" and len(merge.joins) == 20
    lines = render.render_get(render.view(fan_out()), NOW)
    assert any("merge ← shard-01, shard-02, shard-03, +17" in line for line in lines)


def test_a_blocked_step_names_the_failed_upstream_step() -> None:
    v = render.view(degraded())
    for name in ("publish", "notify", "report"):
        step = v.step(name)
        assert step is not None
        assert render.step_message(v, step, NOW) == "blocked by load (Failed)"


def test_a_long_message_stays_on_one_line_and_is_cut_to_the_width() -> None:
    v = render.view(long_message())
    full = render.render_get(v, NOW)
    assert len(full) == 10  # header (6 lines and a blank one), column names, 2 steps
    failed = next(line for line in full if "OOMKilled" in line)
    assert "\n" not in failed and "container main: the training data" in failed
    narrow = render.render_get(v, NOW, render.Style(color=True, width=80))
    assert all(render.visible_len(line) <= 80 for line in narrow)
    assert any(line.endswith("…") or line.endswith("…\x1b[0m") for line in narrow)


def test_a_chain_of_thousands_of_steps_does_not_recurse() -> None:
    steps = [render.Step(f"s{i}", (f"s{i - 1}",) if i else ()) for i in range(3000)]
    rows = render.layout(steps)
    assert [r.step.name for r in rows] == [s.name for s in steps]


def test_a_cycle_is_drawn_flat_rather_than_lost() -> None:
    steps = [render.Step("a", ("b",)), render.Step("b", ("a",)), render.Step("c")]
    assert sorted(r.step.name for r in render.layout(steps)) == ["a", "b", "c"]


def test_ascii_style_draws_without_unicode() -> None:
    lines = render.render_get(render.view(diamond()), NOW, render.ASCII)
    assert all(line.isascii() for line in lines)
    assert any(line.startswith("|-* clean") for line in lines)


def test_a_pipeline_the_operator_has_not_seen_shows_its_steps_as_pending() -> None:
    obj = diamond()
    del obj["status"]
    lines = render.render_get(render.view(obj), NOW)
    assert "no status yet" in lines[1]
    assert sum("Pending" in line for line in lines) == 4


def test_settled_needs_the_run_finished_and_every_request_picked_up() -> None:
    obj = degraded()
    assert render.view(obj).settled
    obj["metadata"]["annotations"] = {"sluice.dev/retry": "2"}
    v = render.view(obj)
    assert not v.settled and v.pending_request == "retry"
    obj["status"]["handledRetry"] = "2"
    assert render.view(obj).settled
    obj["metadata"]["generation"] = 2
    assert not render.view(obj).settled
    assert not render.view(diamond()).settled


def test_watch_lines_say_what_changed_one_line_each() -> None:
    before = render.view(diamond())
    obj = diamond()
    obj["status"]["tasks"][1].update(phase="Succeeded", finishedAt=_t(5))
    obj["status"]["progress"] = "2/4"
    after = render.view(obj)
    assert render.changes(before, after, NOW) == [
        "12:00:00 pipeline diamond: Running 2/4 (run 1): "
        "1 running, 1 waiting to retry, 1 of 4 done.",
        "12:00:00 step clean: Running -> Succeeded (attempt 1)",
    ]
    assert render.changes(after, after, NOW) == []


def _load(phase: str, attempts: int, run: int = 1, **more: Any) -> render.PipelineView:
    obj = _pipeline(
        "nightly",
        [("load", []), ("publish", ["load"])],
        {"load": {"phase": phase, "attempts": attempts, "startedAt": _t(30), **more}},
        phase="Running",
        run=run,
        progress="0/2",
    )
    return render.view(obj)


def test_watch_lines_report_a_retry_whose_retrying_status_was_never_seen() -> None:
    # Running -> Retrying -> Running within one coalesced status write: the watch sees
    # attempt 1 running, then attempt 2 running. The attempt count says it was retried.
    assert render.changes(_load("Running", 1), _load("Running", 2), NOW) == [
        "12:00:00 step load: Running -> Retrying (attempt 1): attempt 1 failed and was "
        "retried (between two updates of the status)",
        "12:00:00 step load: Retrying -> Running (attempt 2)",
    ]
    failed = _load("Failed", 2, reason="Error", message="exit code 3")
    assert render.changes(_load("Running", 1), failed, NOW)[1:] == [
        "12:00:00 step load: Retrying -> Failed (attempt 2): Error: exit code 3",
    ]
    # Two retries unseen, from a view before the first attempt started.
    assert [line[9:] for line in render.changes(_load("Pending", 0), _load("Running", 3), NOW)] == [
        "step load: Pending -> Retrying (attempt 1): attempt 1 failed and was retried "
        "(between two updates of the status)",
        "step load: Retrying -> Retrying (attempt 2): attempt 2 failed and was retried "
        "(between two updates of the status)",
        "step load: Retrying -> Running (attempt 3)",
    ]
    # Attempt 1 unseen as Retrying, attempt 2 Retrying now: its own line, not "Retrying ->
    # Retrying" (attempt 2's run between went unseen too).
    lines = render.changes(_load("Running", 1), _load("Retrying", 2), NOW)
    assert len(lines) == 2
    assert lines[0][9:].startswith("step load: Running -> Retrying (attempt 1): ")
    assert lines[1][9:] == "step load: Retrying (attempt 2)"
    # Attempt 1's retry seen, attempt 2's running not: the one line says so.
    lines = render.changes(_load("Retrying", 1), _load("Retrying", 2), NOW)
    assert [line[9:] for line in lines] == ["step load: Retrying -> Retrying (attempt 2)"]


def test_watch_lines_of_a_seen_retry_or_a_new_attempt_without_one_add_nothing() -> None:
    # Seen: Running -> Retrying -> Running, one line each, no invented one.
    assert [x[9:] for x in render.changes(_load("Running", 1), _load("Retrying", 1), NOW)] == [
        "step load: Running -> Retrying (attempt 1)"
    ]
    assert [x[9:] for x in render.changes(_load("Retrying", 1), _load("Running", 2), NOW)] == [
        "step load: Retrying -> Running (attempt 2)"
    ]
    # `kubectl sluice retry` of a failed step: a new attempt, no Retrying.
    failed = _load("Failed", 2, reason="Error", message="exit code 3")
    assert [x[9:] for x in render.changes(failed, _load("Running", 3), NOW)] == [
        "step load: Failed -> Running (attempt 3)"
    ]
    # A new run starts counting again.
    assert [x[9:] for x in render.changes(_load("Running", 2), _load("Running", 1, run=2), NOW)][
        1:
    ] == ["step load: Running -> Running (attempt 1)"]


def test_list_shows_one_line_per_pipeline_with_its_last_run() -> None:
    views = [render.view(make()) for make in CASES.values()]
    _check("list-plain", "\n".join(render.render_list(views, NOW, namespaces=True)) + "\n")


@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
def test_graph_formats_match_their_golden_output(fmt: str) -> None:
    v = render.view(degraded())
    text = render.to_mermaid(v) if fmt == "mermaid" else render.to_dot(v)
    _check(f"graph-degraded.{fmt}", text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0, "0s"),
        (59.9, "59s"),
        (60, "1m"),
        (192, "3m12s"),
        (7500, "2h5m"),
        (86400 * 3 + 3600 * 4, "3d4h"),
        (-5, "0s"),
    ],
)
def test_durations_read_like_kubectl_ages(seconds: float | None, text: str) -> None:
    assert render.duration(seconds) == text


def test_list_and_get_show_the_next_scheduled_run() -> None:
    obj = diamond()
    obj["status"]["schedule"] = {"nextScheduleTime": _t(-90)}
    v = render.view(obj)
    assert v.next_run_at == NOW + timedelta(seconds=90)
    header, row = render.render_list([v], NOW)
    assert "NEXT RUN" in header and "in 1m30s" in row
    assert any(line.startswith("Next run:") for line in render.render_get(v, NOW))
