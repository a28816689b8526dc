"""sluice.core.validation: every check names the problem, and the operator says the same."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from sluice.core import validation
from sluice.core.validation import Report, check_pipeline, check_task, parse_quantity
from support.world import World

IMG = {"image": "busybox:1.36"}


def inline(name: str, *deps: str, **task: Any) -> dict[str, Any]:
    return {"name": name, "dependsOn": list(deps), "task": {**IMG, **task}}


def ref(name: str, task: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "taskRef": {"name": task}, "dependsOn": list(deps), **extra}


def errors(report: Report) -> list[str]:
    return [f.message for f in report.errors]


def warnings(report: Report) -> list[str]:
    return [f.message for f in report.warnings]


def one_error(spec: dict[str, Any], **kw: Any) -> str:
    report = check_pipeline(spec, **kw)
    assert len(report.errors) == 1, report.findings
    return report.errors[0].message


# --- the graph -------------------------------------------------------------------------


def test_a_valid_pipeline_has_no_findings() -> None:
    spec = {"tasks": [inline("a"), inline("b", "a"), inline("c", "a"), inline("d", "b", "c")]}
    report = check_pipeline(spec, name="diamond", tasks={})

    assert report.findings == []
    assert report.refusal() is None
    assert report.pipeline is not None


def test_a_cycle_is_named_from_its_smallest_task() -> None:
    spec = {"tasks": [inline("extract", "clean"), inline("clean", "extract")]}

    assert one_error(spec) == "cycle: clean -> extract -> clean"


def test_a_long_cycle_is_named_without_the_path_into_it() -> None:
    spec = {
        "tasks": [inline("start"), inline("a", "start", "c"), inline("b", "a"), inline("c", "b")]
    }

    assert one_error(spec) == "cycle: a -> c -> b -> a"


def test_unknown_dependency_is_named_with_a_suggestion() -> None:
    spec = {"tasks": [inline("extract"), inline("clean", "extrct"), inline("load", "ghost")]}
    report = check_pipeline(spec)

    assert errors(report) == [
        'task "clean" depends on unknown task "extrct" (did you mean "extract"?)',
        'task "load" depends on unknown task "ghost"',
    ]


def test_self_dependency_and_duplicates_are_named() -> None:
    # The schema refuses these first (CEL, list-type map/set); the pure core must still
    # explain them for objects that never met the schema.
    spec = {"tasks": [inline("a", "a"), inline("b", "a", "a"), inline("b")]}

    assert errors(check_pipeline(spec)) == [
        'task name "b" is used twice',
        'step "a" cannot depend on itself',
        'task "b" lists "a" twice in dependsOn',
    ]


def test_schema_errors_are_reported_with_their_path() -> None:
    report = check_pipeline({"tasks": [{"name": "Bad_Name", "task": {"image": ""}}]})

    assert report.pipeline is None
    assert all(m.startswith("invalid spec: spec.tasks[0]") for m in errors(report))
    assert any("name" in m for m in errors(report))


@pytest.mark.parametrize("spec", [None, [], "tasks", 3, {"tasks": "a"}, {}])
def test_a_spec_that_is_not_a_pipeline_spec_is_an_error_not_a_crash(spec: Any) -> None:
    report = check_pipeline(spec)

    assert report.errors and all(m.startswith("invalid spec") for m in errors(report))


def test_exactly_one_of_task_ref_and_task_in_the_same_words_as_the_cel_rule() -> None:
    message = one_error({"tasks": [{"name": "a"}]})

    assert "exactly one of taskRef and task must be set" in message


def test_a_pipeline_name_that_cannot_form_a_job_name_is_an_error() -> None:
    message = one_error({"tasks": [inline("a")]}, name="Not_A_Name")

    assert 'pipeline "Not_A_Name" and task "a" cannot form a valid Job name' in message


def test_long_names_are_fine_because_job_names_are_shortened_with_a_hash() -> None:
    spec = {"tasks": [inline("t" * 63)]}

    assert check_pipeline(spec, name="p" * 253).findings == []


# --- params ----------------------------------------------------------------------------


def test_a_reference_to_a_parameter_nobody_declares_is_an_error() -> None:
    spec = {
        "tasks": [
            inline(
                "train",
                command=["train", "--data", "$(params.datset)"],
                params=[{"name": "dataset", "default": "s3://x"}],
            )
        ]
    }

    assert one_error(spec) == (
        'task "train": command[2] uses $(params.datset), which the task does not declare '
        '(it declares "dataset") (did you mean "dataset"?)'
    )


def test_references_in_args_and_env_values_are_checked_too() -> None:
    spec = {
        "tasks": [
            inline("t", args=["$(params.a)"], env=[{"name": "X", "value": "$(params.b)"}]),
        ]
    }

    assert errors(check_pipeline(spec)) == [
        'task "t": args[0] uses $(params.a), which the task does not declare',
        'task "t": env "X" uses $(params.b), which the task does not declare',
    ]


def test_a_step_value_referring_to_an_undeclared_pipeline_parameter_is_an_error() -> None:
    spec = {
        "params": [{"name": "dataset", "value": "s3://x"}],
        "tasks": [
            ref("train", "train", params=[{"name": "data", "value": "$(params.datase)"}]),
        ],
    }
    message = one_error(spec)

    assert message == (
        'task "train": parameter "data" uses $(params.datase), which the pipeline does not '
        'declare (did you mean "dataset"?)'
    )


def test_a_declared_parameter_without_any_value_is_an_error() -> None:
    spec = {"tasks": [inline("t", params=[{"name": "x"}], command=["$(params.x)"])]}

    assert one_error(spec) == 'task "t": no value for parameter "x"'


def test_a_parameter_gets_its_value_from_the_step_the_pipeline_or_a_default() -> None:
    task = {**IMG, "params": [{"name": "a"}, {"name": "b"}, {"name": "c", "default": "3"}]}
    task["command"] = ["$(params.a)", "$(params.b)", "$(params.c)"]
    spec = {
        "params": [{"name": "b", "value": "2"}],
        "tasks": [{"name": "t", "task": task, "params": [{"name": "a", "value": "1"}]}],
    }

    assert check_pipeline(spec).findings == []


def test_suspicious_parameters_are_warnings() -> None:
    spec = {
        "params": [{"name": "unused", "value": "v"}],
        "tasks": [
            inline(
                "t",
                params=[{"name": "p", "default": "1"}, {"name": "idle", "default": "1"}],
                command=["$(params.p)", "$(params.9lives)"],
            )
            | {"params": [{"name": "typo", "value": "x"}]},
        ],
    }
    report = check_pipeline(spec)

    assert report.errors == []
    assert set(warnings(report)) == {
        'task "t": command[1] has "$(params." that is not a parameter reference: a reference '
        "is $(params.NAME), NAME a letter or '_' then letters, digits, '_', '.' or '-'",
        'task "t": parameter "idle" is declared but not used',
        'task "t" sets parameter "typo", which its task does not declare: it is ignored',
        'pipeline parameter "unused" is not used: no task declares it',
    }


# --- Tasks: external findings ----------------------------------------------------------


def test_a_missing_task_is_an_external_error_a_warning_for_the_webhook() -> None:
    report = check_pipeline({"tasks": [ref("b", "nope")]}, tasks={"nop": {"spec": IMG}})

    assert errors(report) == [
        'task "b" refers to Task "nope", which does not exist (did you mean "nop"?)'
    ]
    assert report.errors[0].external
    assert report.errors[0].step == "b"
    assert report.refusal() is None
    assert report.advice() == errors(report)


def test_without_the_tasks_the_checks_that_need_them_are_skipped() -> None:
    assert check_pipeline({"tasks": [ref("b", "nope")]}, tasks=None).findings == []


def test_a_task_ref_to_an_invalid_task_says_why_it_is_invalid() -> None:
    tasks = {"bad": {"spec": {"image": "Busybox"}}}
    message = one_error({"tasks": [ref("b", "bad")]}, tasks=tasks)

    assert message.startswith('task "b" uses Task "bad", which is invalid: image "Busybox" is')


def test_params_of_a_referenced_task_are_checked_against_the_pipeline() -> None:
    tasks = {
        "train": {
            "spec": {**IMG, "params": [{"name": "dataset"}], "command": ["$(params.dataset)"]}
        }
    }
    spec = {"tasks": [ref("t", "train")]}
    report = check_pipeline(spec, tasks=tasks)

    assert errors(report) == ['task "t": no value for parameter "dataset"']
    assert report.errors[0].external  # the Task may get a default later
    assert (
        check_pipeline(
            {"params": [{"name": "dataset", "value": "s3://x"}], **spec}, tasks=tasks
        ).findings
        == []
    )


def test_the_webhook_refuses_for_own_errors_and_only_warns_for_external_ones() -> None:
    spec = {"tasks": [inline("a", "ghost"), ref("b", "nope")]}
    report = check_pipeline(spec, tasks={})

    assert report.refusal() == 'Invalid pipeline: task "a" depends on unknown task "ghost".'
    assert report.advice() == ['task "b" refers to Task "nope", which does not exist']


# --- task definitions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        (
            {"image": "Busybox:1.36"},
            'image "Busybox:1.36" is not a valid image reference: [registry[:port]/]name[:tag]'
            "[@digest], the name in lowercase",
        ),
        ({"image": "busybox:1.36 "}, "is not a valid image reference"),
        (
            {**IMG, "env": [{"name": "PORT", "value": 8080}]},
            'env "PORT": the value must be a string (quote it: "8080")',
        ),
        ({**IMG, "env": [{"value": "x"}]}, "env[0] has no name"),
        ({**IMG, "env": [{"name": "A=B", "value": "x"}]}, "other than '='"),
        (
            {**IMG, "env": [{"name": "A", "valeu": "x"}]},
            'env "A": unknown field "valeu" (did you mean "value"?)',
        ),
        (
            {**IMG, "env": [{"name": "A", "value": "x", "valueFrom": {"fieldRef": {}}}]},
            "a value or a valueFrom, not both",
        ),
        ({**IMG, "env": [{"name": "A", "valueFrom": {}}]}, "valueFrom needs exactly one of"),
        (
            {**IMG, "envFrom": [{"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}]},
            "exactly one of configMapRef and secretRef",
        ),
        ({**IMG, "envFrom": [{"configMapRef": {}}]}, "envFrom[0].configMapRef needs a name"),
        (
            {**IMG, "resources": {"limit": {"cpu": 1}}},
            'resources: unknown field "limit" (did you mean "limits"?)',
        ),
        (
            {**IMG, "resources": {"requests": {"memory": "1x"}}},
            'resources.requests.memory: "1x" is not a quantity',
        ),
        (
            {**IMG, "resources": {"requests": {"cpu": "-1"}}},
            "resources.requests.cpu must not be negative",
        ),
        (
            {**IMG, "resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}},
            "resources: requests.memory (2Gi) is more than limits.memory (1Gi)",
        ),
        (
            {**IMG, "podTemplate": {"spce": {}}},
            'podTemplate: unknown field "spce" (a pod template has metadata and spec) '
            '(did you mean "spec"?)',
        ),
        (
            {**IMG, "podTemplate": {"metadata": {"labels": {"team": "data science"}}}},
            "is not a label value",
        ),
        (
            {**IMG, "podTemplate": {"metadata": {"labels": {"-x": "y"}}}},
            "a label key is [prefix/]name",
        ),
        ({**IMG, "podTemplate": {"metadata": {"labels": {"team": 3}}}}, '"3" is not a label value'),
        (
            {**IMG, "podTemplate": {"metadata": {"labels": {"job-name": "x"}}}},
            '"job-name" is set by the Job controller',
        ),
        (
            {**IMG, "podTemplate": {"metadata": {"annotations": {"a": 1}}}},
            "the value must be a string",
        ),
        (
            {**IMG, "podTemplate": {"spec": {"nodeSelector": {"disk": True}}}},
            "nodeSelector must map label keys to strings",
        ),
        (
            {**IMG, "podTemplate": {"spec": {"tolerations": {"key": "x"}}}},
            "tolerations must be a list",
        ),
        (
            {**IMG, "podTemplate": {"spec": {"volumes": [{"name": "v"}, {"name": "v"}]}}},
            'volumes: "v" is declared twice',
        ),
        (
            {**IMG, "podTemplate": {"spec": {"containers": [{"name": "sidecar"}]}}},
            'containers "sidecar" needs an image',
        ),
        ({**IMG, "podTemplate": {"spec": {"serviceAccountName": "Admin"}}}, "serviceAccountName"),
        (
            {**IMG, "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"nmae": "s"}}}]},
            'env "A".valueFrom.secretKeyRef: unknown field "nmae" (did you mean "name"?)',
        ),
        # A typo in the pod template would silently drop what the user asked for.
        (
            {**IMG, "podTemplate": {"spec": {"nodeSelecter": {}}}},
            'podTemplate.spec: unknown field "nodeSelecter" (did you mean "nodeSelector"?)',
        ),
        (
            {
                **IMG,
                "podTemplate": {
                    "spec": {"containers": [{"name": "main", "resources": {"limts": {}}}]}
                },
            },
            'podTemplate.spec.containers[0].resources: unknown field "limts" '
            '(did you mean "limits"?)',
        ),
    ],
)
def test_task_definition_problems_are_named(task: dict[str, Any], expected: str) -> None:
    report = check_task(task)
    assert any(expected in m for m in errors(report)), report.findings
    # ... and the same words for an inline task, prefixed with the step.
    pipeline = check_pipeline({"tasks": [{"name": "t", "task": task}]})
    assert any(m.startswith('task "t": ') and expected in m for m in errors(pipeline))


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        (
            {**IMG, "env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
            "is set twice",
        ),
        ({**IMG, "env": [{"name": "BIG", "value": "x" * 200_000}]}, "Linux refuses to start"),
        ({**IMG, "podTemplate": {"spec": {"restartPolicy": "OnFailure"}}}, "is replaced by Never"),
        (
            {**IMG, "podTemplate": {"metadata": {"name": "x"}}},
            "podTemplate.metadata.name has no effect",
        ),
        (
            {**IMG, "podTemplate": {"metadata": {"labels": {"sluice.dev/task": "x"}}}},
            "replaced by Sluice's own",
        ),
        (
            {**IMG, "retry": {"backoff": {"initialSeconds": 60, "maxSeconds": 5}}},
            "every retry waits 5s",
        ),
    ],
)
def test_suspicious_task_definitions_are_warnings(task: dict[str, Any], expected: str) -> None:
    report = check_task(task)

    assert report.errors == []
    assert any(expected in m for m in warnings(report)), report.findings


def test_a_valid_task_with_everything_has_no_findings() -> None:
    task = {
        "image": "ghcr.io/acme/churn-train@sha256:" + "a" * 64,
        "command": ["python", "-m", "train", "--data", "$(params.dataset)"],
        "env": [
            {"name": "EPOCHS", "value": "$(params.epochs)"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "weird.name-ok", "value": "ünïcødé ✓"},
        ],
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "1024Mi"}},
        "podTemplate": {
            "metadata": {"labels": {"team": "ml", "app.kubernetes.io/part-of": "churn"}},
            "spec": {
                "nodeSelector": {"gpu": "true"},
                "tolerations": [{"key": "gpu", "operator": "Exists"}],
                "volumes": [{"name": "data", "emptyDir": {}}],
                "containers": [
                    {"name": "main", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}
                ],
            },
        },
        "params": [{"name": "dataset"}, {"name": "epochs", "default": "3"}],
    }

    assert check_task(task).findings == []


def test_a_task_object_too_big_to_store_is_an_error() -> None:
    report = check_task(IMG, size=validation.MAX_OBJECT_BYTES + 1)

    assert "over the 1536 KiB the API server stores" in errors(report)[0]


def test_a_pipeline_whose_status_would_not_fit_is_an_error() -> None:
    spec = {"tasks": [inline(f"t{i}") for i in range(1000)]}
    fits = check_pipeline(spec, size=200_000)
    too_big = check_pipeline(spec, size=1_200_000)

    assert fits.errors == []
    assert "the pipeline is too big: 1171 KiB, plus about" in errors(too_big)[0]


# --- quantities ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", Decimal(1)),
        (2, Decimal(2)),
        ("500m", Decimal("0.5")),
        ("1Gi", Decimal(2**30)),
        ("1024Mi", Decimal(2**30)),
        ("1e3", Decimal(1000)),
        ("1.5k", Decimal(1500)),
        (".5", Decimal("0.5")),
        ("-1", Decimal(-1)),
    ],
)
def test_quantities_parse_exactly(text: Any, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["1x", "", "Gi", "1 Gi", "1.2.3", True, None, [], "1e99999999999"])
def test_non_quantities_are_none(text: Any) -> None:
    assert parse_quantity(text) is None


# --- messages --------------------------------------------------------------------------


def test_long_lists_of_problems_are_capped_and_counted() -> None:
    spec = {"tasks": [inline(f"t{i}", f"ghost{i}") for i in range(25)]}
    message = check_pipeline(spec).message()

    assert message.count("depends on unknown task") == validation.MAX_LISTED
    assert message.endswith("; and 15 more.")
    assert len(message) < 1000


def test_user_values_in_messages_are_quoted_and_shortened() -> None:
    message = check_task({"image": "X" * 500 + '"\n'}).errors[0].message

    assert len(message) < 200
    assert "…" in message
    assert "\n" not in message


def test_unicode_in_values_stays_readable_in_messages() -> None:
    report = check_task({**IMG, "env": [{"name": "GRÜSSE", "value": "x"}]})

    assert errors(report) == [
        "env \"GRÜSSE\": a variable name is printable ASCII characters other than '='"
    ]


def test_advice_is_capped_for_the_webhook() -> None:
    spec = {"tasks": [ref(f"t{i}", f"missing{i}") for i in range(30)]}
    advice = check_pipeline(spec, tasks={}).advice()

    assert len(advice) == validation.MAX_LISTED
    assert advice[-1] == "and 21 more warnings"
    report = Report("pipeline", [validation.Finding("warning", "w" * 300)])
    assert report.advice() == ["w" * 255 + "…"]


# --- the operator says what the webhook says --------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        {"tasks": [inline("extract", "clean"), inline("clean", "extract")]},
        {"tasks": [inline("a", "ghost")]},
        {"tasks": [inline("t", command=["$(params.nope)"])]},
        {"tasks": [inline("t", image="Busybox")]},
        {"tasks": [inline("t", env=[{"name": "PORT", "value": 80}])]},
        {"tasks": [inline("t", resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}})]},
        {"tasks": [inline("a", "b"), inline("b", "a"), inline("c", image="UPPER")]},
    ],
)
def test_the_operator_fails_a_pipeline_with_the_message_the_webhook_refuses_it_with(
    spec: dict[str, Any],
) -> None:
    refusal = check_pipeline(spec, name="p", tasks={}).refusal()
    w = World.of(spec)
    plan = w.reconcile()

    assert refusal is not None
    assert w.phase == "Failed"
    assert w.status["message"] == refusal
    assert w.condition("Succeeded")["reason"] == "InvalidSpec"
    assert [e.message for e in plan.events if e.reason == "InvalidSpec"] == [refusal]
    assert plan.create == []


def test_the_operator_fails_on_external_errors_the_webhook_only_warned_about() -> None:
    w = World.of({"tasks": [ref("b", "nope")]})
    w.reconcile()

    assert w.phase == "Failed"
    assert w.status["message"] == (
        'Invalid pipeline: task "b" refers to Task "nope", which does not exist.'
    )
    w.tasks["nope"] = {"spec": dict(IMG)}
    w.reconcile()
    assert w.phase == "Running"


def test_a_task_that_turns_invalid_after_its_step_succeeded_does_not_stop_the_rest() -> None:
    w = World.of({"tasks": [ref("a", "ta"), inline("b", "a")]}, tasks={"ta": dict(IMG)})
    w.reconcile()
    w.succeed("a")
    w.tasks["ta"] = {"spec": {"image": "Not Valid"}}
    w.reconcile()

    assert w.task_phase("b") == "Running"
    assert w.phase == "Running"


def test_odd_field_names_are_quoted_so_a_message_stays_one_line() -> None:
    # Found by hypothesis: a newline in a podTemplate.metadata key reached the message.
    report = check_task({"image": "busybox:1.36", "podTemplate": {"metadata": {"\n": None}}})
    assert report.warnings or report.errors
    for finding in [*report.errors, *report.warnings]:
        assert "\n" not in finding.message
