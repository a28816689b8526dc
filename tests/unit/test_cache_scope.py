"""A step's own cache on a matrixed or finally step warns that it cannot apply."""

from __future__ import annotations

from sluice.core.validation import check_pipeline
from sluice.core.validation.cache_scope import NOT_CACHED

TASK = {"image": "busybox:1.36", "args": ["$(params.lr)"], "params": [{"name": "lr"}]}
ON = {"enabled": True}


def _warnings(spec: dict) -> list[str]:
    report = check_pipeline(spec, name="p", tasks={})
    assert report.errors == []
    return [f.message for f in report.warnings]


def test_a_cached_plain_step_and_a_pipeline_wide_cache_do_not_warn() -> None:
    matrix = {"params": [{"name": "lr", "values": ["0.1", "0.2"]}]}
    spec = {
        "cache": ON,
        "tasks": [
            {"name": "a", "task": TASK, "params": [{"name": "lr", "value": "1"}], "cache": ON},
            {"name": "b", "task": TASK, "matrix": matrix},
        ],
        "finally": [{"name": "f", "task": {"image": "busybox:1.36"}}],
    }
    assert _warnings(spec) == []


def test_a_cache_written_on_a_matrixed_or_finally_step_warns() -> None:
    matrix = {"params": [{"name": "lr", "values": ["0.1", "0.2"]}]}
    spec = {
        "tasks": [{"name": "sweep", "task": TASK, "matrix": matrix, "cache": ON}],
        "finally": [{"name": "report", "task": {"image": "busybox:1.36"}, "cache": ON}],
    }
    assert _warnings(spec) == [
        f'task "sweep": {NOT_CACHED} matrixed steps: the step always runs',
        f'task "report": {NOT_CACHED} finally steps: the step always runs',
    ]
