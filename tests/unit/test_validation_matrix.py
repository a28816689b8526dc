"""The matrix checks (issue 15) through check_pipeline, and check_matrix on its own."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.api import Matrix, MatrixParam, PipelineTask, TaskSpec
from sluice.core.validation import check_pipeline
from sluice.core.validation.matrix import check_matrix, matrix_texts

TRAIN = {
    "image": "busybox:1.36",
    "args": ["train", "$(params.lr)", "$(params.depth)"],
    "params": [{"name": "lr"}, {"name": "depth", "default": "4"}],
}
LIST = {"image": "busybox:1.36", "results": [{"name": "shards"}]}


def _spec(matrix: dict[str, Any], **step: Any) -> dict[str, Any]:
    return {
        "tasks": [
            {"name": "list", "task": LIST},
            {"name": "train", "task": TRAIN, "matrix": matrix, **step},
        ]
    }


def _errors(spec: dict[str, Any], tasks: dict[str, Any] | None = None) -> list[str]:
    return [f.message for f in check_pipeline(spec, name="p", tasks=tasks or {}).errors]


def test_a_good_matrix_passes() -> None:
    spec = _spec(
        {
            "params": [
                {"name": "lr", "values": ["0.1", "0.01"]},
                {"name": "depth", "fromResult": "$(tasks.list.results.shards)"},
            ],
            "minSuccess": "50%",
            "maxParallel": 2,
        }
    )
    report = check_pipeline(spec, name="p", tasks={})
    assert report.errors == []
    assert report.warnings == []  # fan-out runs: no "not acted on yet" warning any more


def test_a_matrix_param_the_task_does_not_declare() -> None:
    errors = _errors(_spec({"params": [{"name": "lrr", "values": ["1"]}]}))
    assert errors == [
        'task "train": no value for parameter "lr"',
        'task "train": matrix param "lrr" is not a parameter its task declares '
        '(did you mean "lr"?)',
    ]


def test_a_matrix_param_also_in_the_steps_params() -> None:
    spec = _spec(
        {"params": [{"name": "lr", "values": ["1"]}]}, params=[{"name": "lr", "value": "2"}]
    )
    assert _errors(spec) == ['task "train" sets parameter "lr" both in params and in its matrix']


def test_from_result_of_an_unknown_step() -> None:
    errors = _errors(
        _spec({"params": [{"name": "lr", "fromResult": "$(tasks.lst.results.shards)"}]})
    )
    assert errors == [
        'task "train": matrix param "lr" uses $(tasks.lst.results.shards), but there is no '
        'task "lst" (did you mean "list"?)'
    ]


def test_from_result_of_an_undeclared_result() -> None:
    errors = _errors(
        _spec({"params": [{"name": "lr", "fromResult": "$(tasks.list.results.shard)"}]})
    )
    assert len(errors) == 1
    assert errors[0].startswith(
        'task "train": matrix param "lr" uses $(tasks.list.results.shard), but task "list" '
        'declares no result "shard" (it declares "shards")'
    )


def test_from_result_of_a_task_object_is_external() -> None:
    spec = {
        "tasks": [
            {"name": "list", "taskRef": {"name": "lister"}},
            {
                "name": "train",
                "task": TRAIN,
                "matrix": {"params": [{"name": "lr", "fromResult": "$(tasks.list.results.x)"}]},
            },
        ]
    }
    report = check_pipeline(spec, name="p", tasks={"lister": {"spec": LIST}})
    (finding,) = report.errors
    assert finding.external and "declares no result" in finding.message
    assert report.refusal() is None  # the webhook warns: the Task may change


def test_undeclared_matrix_param_of_a_task_object_is_external() -> None:
    spec = {
        "tasks": [
            {
                "name": "train",
                "taskRef": {"name": "trainer"},
                "matrix": {
                    "params": [{"name": "lr", "values": ["1"]}, {"name": "x", "values": ["1"]}]
                },
            }
        ]
    }
    report = check_pipeline(spec, name="p", tasks={"trainer": {"spec": TRAIN}})
    (finding,) = report.errors
    assert finding.external and finding.step == "train"
    # Unknown Tasks: nothing to check against.
    assert check_pipeline(spec, name="p", tasks=None).errors == []


def test_min_success_above_the_width() -> None:
    spec = _spec({"params": [{"name": "lr", "values": ["1", "2"]}], "minSuccess": 3})
    assert _errors(spec) == [
        'task "train": matrix.minSuccess (3) is more than the matrix\'s 2 combinations'
    ]


def test_min_success_of_a_dynamic_matrix_is_checked_at_run_time() -> None:
    spec = _spec(
        {"params": [{"name": "lr", "fromResult": "$(tasks.list.results.shards)"}], "minSuccess": 99}
    )
    assert _errors(spec) == []


def test_a_static_matrix_over_the_cap() -> None:
    spec = _spec(
        {
            "params": [
                {"name": "lr", "values": [str(i) for i in range(20)]},
                {"name": "depth", "values": [str(i) for i in range(13)]},
            ]
        }
    )
    assert _errors(spec) == [
        'task "train": the matrix has 260 combinations, more than the cap of 256 '
        "(sluice run --max-matrix)"
    ]


def test_a_matrix_in_a_finally_step_is_checked_too() -> None:
    spec = {
        "tasks": [{"name": "list", "task": LIST}],
        "finally": [
            {
                "name": "report",
                "task": TRAIN,
                "matrix": {"params": [{"name": "no", "values": ["1"]}]},
            }
        ],
    }
    # Finally steps' values are checked like main steps': "lr" is given by neither.
    assert _errors(spec) == [
        'task "report": no value for parameter "lr"',
        'task "report": matrix param "no" is not a parameter its task declares',
    ]


@pytest.mark.parametrize(
    ("matrix", "fragment"),
    [
        ({"params": []}, "matrix.params: List should have at least 1 item"),
        ({"params": [{"name": "lr", "values": []}]}, "values: List should have at least 1 item"),
        (
            {"params": [{"name": "lr", "fromResult": "tasks.list"}]},
            "fromResult: String should match",
        ),
        ({"params": [{"name": "lr", "values": ["1"]}], "minSuccess": "90"}, "minSuccess"),
        ({"params": [{"name": "lr", "values": ["1"]}], "maxParallel": 0}, "maxParallel"),
    ],
)
def test_what_the_schema_refuses_the_operator_refuses_too(
    matrix: dict[str, Any], fragment: str
) -> None:
    errors = _errors(_spec(matrix))
    assert len(errors) >= 1 and any(fragment in e for e in errors), errors


def test_duplicate_names_and_neither_values_nor_from_result() -> None:
    # The schema refuses these first (list-map keys, CEL); the operator again.
    assert any(
        'matrix param "lr" is listed twice' in e
        for e in _errors(
            _spec({"params": [{"name": "lr", "values": ["1"]}, {"name": "lr", "values": ["2"]}]})
        )
    )
    both = _spec(
        {"params": [{"name": "lr", "values": ["1"], "fromResult": "$(tasks.list.results.shards)"}]}
    )
    assert _errors(both) == [
        'task "train": matrix param "lr": exactly one of values and fromResult must be set'
    ]
    assert _errors(_spec({"params": [{"name": "lr"}]})) == [
        'task "train": matrix param "lr": exactly one of values and fromResult must be set'
    ]


def test_check_matrix_on_models_built_without_validation() -> None:
    step = PipelineTask.model_construct(
        name="s",
        params=[],
        matrix=Matrix.model_construct(
            params=[MatrixParam.model_construct(name="lr", values=[], from_result=None)],
            min_success=None,
        ),
    )
    task = TaskSpec(image="busybox", params=[{"name": "lr"}])  # type: ignore[list-item]
    assert [f.message for f in check_matrix(step, task)] == [
        'task "s": matrix param "lr" has no values'
    ]


def test_matrix_texts_for_data_flow() -> None:
    step = PipelineTask.model_validate(
        {
            "name": "s",
            "task": TRAIN,
            "matrix": {
                "params": [
                    {"name": "lr", "values": ["1"]},
                    {"name": "depth", "fromResult": "$(tasks.list.results.shards)"},
                ]
            },
        }
    )
    assert matrix_texts(step) == [('matrix param "depth"', "$(tasks.list.results.shards)")]
