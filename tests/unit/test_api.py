"""The pydantic models of the sluice.dev/v1alpha1 API: parsing, defaults, serialisation."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from sluice import api
from sluice.api import (
    Backoff,
    Condition,
    FailureKind,
    PipelineSpec,
    PipelineStatus,
    PipelineTask,
    RetryPolicy,
    TaskRef,
    TaskSpec,
    TaskStatus,
    dump,
    parse_pipeline_spec,
    parse_pipeline_status,
    parse_rfc3339,
    parse_task_spec,
    rfc3339,
)

# The example of SPEC.md section 2, verbatim.
SPEC_EXAMPLE = """
apiVersion: sluice.dev/v1alpha1
kind: Task
metadata: {name: train}
spec:
  image: ghcr.io/acme/churn-train:1.4
  command: [python, -m, churn.train, --data, $(params.dataset)]
  params: [{name: dataset}]
  resources: {requests: {cpu: "2", memory: 4Gi}}
  retry: {limit: 3, backoff: {initialSeconds: 30, factor: 2, maxSeconds: 600}}
  timeoutSeconds: 7200
---
apiVersion: sluice.dev/v1alpha1
kind: Pipeline
metadata: {name: churn-model}
spec:
  params: [{name: dataset, value: s3://acme/churn/2026-11-26}]
  maxParallel: 4
  tasks:
    - {name: ingest, taskRef: {name: ingest}}
    - {name: validate, taskRef: {name: validate-data}, dependsOn: [ingest]}
    - {name: preprocess, taskRef: {name: preprocess}, dependsOn: [validate]}
    - {name: train, taskRef: {name: train}, dependsOn: [preprocess]}
    - {name: evaluate, taskRef: {name: evaluate}, dependsOn: [train]}
    - {name: register, taskRef: {name: register}, dependsOn: [evaluate]}
    - name: report          # an inline task
      dependsOn: [ingest]
      task: {image: busybox:1.36, command: [sh, -c, "echo profiled"]}
"""

STATUS = {
    "phase": "Degraded",
    "run": 2,
    "observedGeneration": 5,
    "startedAt": "2026-11-26T14:51:56Z",
    "progress": "4/6",
    "message": "Task train failed after 3 attempts; evaluate, register are blocked.",
    "tasks": [
        {
            "name": "train",
            "phase": "Failed",
            "attempts": 3,
            "job": "churn-model-r2-train-a3",
            "startedAt": "2026-11-26T14:52:00Z",
            "finishedAt": "2026-11-26T15:10:30Z",
            "reason": "OOMKilled",
            "message": "container exited with code 137",
            "specHash": "3f2a9c",
            "retryBase": 0,
        },
        {"name": "evaluate", "phase": "Blocked", "attempts": 0, "retryBase": 0},
    ],
    "conditions": [
        {
            "type": "Degraded",
            "status": "True",
            "reason": "RetriesExhausted",
            "message": "task train failed",
            "lastTransitionTime": "2026-11-26T15:10:30Z",
            "observedGeneration": 5,
        }
    ],
    "handledRetry": "1",
}


def _example(kind: str) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(SPEC_EXAMPLE) if d["kind"] == kind]
    assert len(docs) == 1
    spec: dict[str, Any] = docs[0]["spec"]
    return spec


def _contains(outer: Any, inner: Any) -> bool:
    """Whether ``outer`` holds everything ``inner`` says (defaults may add more)."""
    if isinstance(inner, dict):
        return isinstance(outer, dict) and all(
            k in outer and _contains(outer[k], v) for k, v in inner.items()
        )
    if isinstance(inner, list):
        return (
            isinstance(outer, list)
            and len(outer) == len(inner)
            and all(_contains(o, i) for o, i in zip(outer, inner, strict=True))
        )
    return bool(outer == inner)


def _step(**fields: Any) -> dict[str, Any]:
    return {"tasks": [{"name": "a", **fields}]}


# --- the SPEC.md example ---------------------------------------------------------------


def test_spec_example_task_round_trips_through_the_model() -> None:
    raw = _example("Task")
    task = parse_task_spec(raw)

    assert task.image == "ghcr.io/acme/churn-train:1.4"
    assert task.command == ["python", "-m", "churn.train", "--data", "$(params.dataset)"]
    assert task.params[0].name == "dataset" and task.params[0].default is None
    assert task.resources == {"requests": {"cpu": "2", "memory": "4Gi"}}
    assert task.retry is not None and task.retry.limit == 3
    assert task.retry.backoff == Backoff(initial_seconds=30, factor=2, max_seconds=600)
    assert task.timeout_seconds == 7200
    assert _contains(dump(task), raw)
    assert parse_task_spec(dump(task)) == task


def test_spec_example_pipeline_round_trips_through_the_model() -> None:
    raw = _example("Pipeline")
    spec = parse_pipeline_spec(raw)

    assert [t.name for t in spec.tasks] == [
        "ingest",
        "validate",
        "preprocess",
        "train",
        "evaluate",
        "register",
        "report",
    ]
    assert spec.tasks[1].task_ref == TaskRef(name="validate-data")
    assert spec.tasks[1].depends_on == ["ingest"]
    assert spec.params[0].value == "s3://acme/churn/2026-11-26"
    assert spec.max_parallel == 4
    assert _contains(dump(spec), raw)
    assert parse_pipeline_spec(dump(spec)) == spec


def test_inline_task_is_a_full_task_spec() -> None:
    report = parse_pipeline_spec(_example("Pipeline")).tasks[-1]

    assert report.task_ref is None
    assert report.task == TaskSpec(image="busybox:1.36", command=["sh", "-c", "echo profiled"])


def test_status_round_trips_through_the_model() -> None:
    status = parse_pipeline_status(STATUS)

    assert status.phase == "Degraded"
    assert status.tasks[0].started_at == datetime(2026, 11, 26, 14, 52, 0, tzinfo=UTC)
    assert status.conditions[0].last_transition_time == datetime(
        2026, 11, 26, 15, 10, 30, tzinfo=UTC
    )
    assert dump(status) == STATUS
    assert parse_pipeline_status(dump(status)) == status


# --- defaults -----------------------------------------------------------------------------


def test_retry_policy_defaults_to_two_retries_with_exponential_backoff_on_every_failure() -> None:
    policy = RetryPolicy()

    assert policy.limit == 2
    assert policy.backoff == Backoff(initial_seconds=10, factor=2.0, max_seconds=600)
    assert policy.retry_on == [
        FailureKind.FAILED,
        FailureKind.DEADLINE_EXCEEDED,
        FailureKind.EVICTED,
        FailureKind.POD_FAILURE,
    ]


def test_a_partial_retry_policy_gets_defaults_for_what_it_leaves_out() -> None:
    task = parse_task_spec({"image": "x", "retry": {"limit": 5, "backoff": {"factor": 3}}})

    assert task.retry == RetryPolicy(limit=5, backoff=Backoff(factor=3))
    assert task.retry.backoff.initial_seconds == 10
    assert task.retry.backoff.max_seconds == 600


def test_retry_defaults_are_not_shared_between_instances() -> None:
    first, second = RetryPolicy(), RetryPolicy()
    first.retry_on.remove(FailureKind.EVICTED)
    first.backoff.factor = 5

    assert FailureKind.EVICTED in second.retry_on
    assert second.backoff.factor == 2


def test_pipeline_spec_defaults() -> None:
    spec = parse_pipeline_spec({"tasks": [{"name": "a", "taskRef": {"name": "t"}}]})

    assert spec.params == []
    assert spec.max_parallel is None
    assert spec.failure_policy == "ContinueIndependent"
    assert spec.timeout_seconds is None
    assert spec.suspend is False
    assert spec.ttl_seconds_after_finished is None
    assert spec.job_retention == "Failed"
    assert spec.tasks[0].depends_on == []
    assert spec.tasks[0].params == []
    assert spec.tasks[0].retry is None


def test_task_spec_defaults_leave_optional_fields_unset() -> None:
    task = parse_task_spec({"image": "busybox"})

    assert task.retry is None
    assert task.timeout_seconds is None
    assert task.params == []
    assert dump(task) == {"image": "busybox", "params": [], "results": []}


def test_a_pipeline_without_status_reads_as_an_empty_status() -> None:
    assert parse_pipeline_status(None) == PipelineStatus()
    assert parse_pipeline_status({}) == PipelineStatus()
    assert PipelineStatus().run == 0
    assert PipelineStatus().phase is None


def test_task_status_defaults_to_pending_with_no_attempts() -> None:
    status = TaskStatus(name="a")

    assert (status.phase, status.attempts, status.retry_base) == ("Pending", 0, 0)
    assert dump(status) == {"name": "a", "phase": "Pending", "attempts": 0, "retryBase": 0}


# --- validation ---------------------------------------------------------------------------


def test_step_with_both_task_ref_and_inline_task_is_rejected() -> None:
    with pytest.raises(ValidationError, match="exactly one of taskRef and task must be set"):
        parse_pipeline_spec(_step(taskRef={"name": "t"}, task={"image": "x"}))


def test_step_with_neither_task_ref_nor_inline_task_is_rejected() -> None:
    with pytest.raises(ValidationError, match="task 'a': exactly one of taskRef and task"):
        parse_pipeline_spec(_step())


def test_pipeline_without_tasks_is_rejected() -> None:
    with pytest.raises(ValidationError, match="tasks"):
        parse_pipeline_spec({"tasks": []})
    with pytest.raises(ValidationError, match="tasks"):
        parse_pipeline_spec({})


@pytest.mark.parametrize("name", ["Train", "-train", "train-", "a_b", "a.b", "", "x" * 64])
def test_step_names_that_are_not_dns_labels_are_rejected(name: str) -> None:
    with pytest.raises(ValidationError):
        parse_pipeline_spec({"tasks": [{"name": name, "taskRef": {"name": "t"}}]})


@pytest.mark.parametrize("name", ["a", "train", "step-2", "0", "x" * 63])
def test_step_names_that_are_dns_labels_are_accepted(name: str) -> None:
    spec = parse_pipeline_spec({"tasks": [{"name": name, "taskRef": {"name": "t"}}]})

    assert spec.tasks[0].name == name


def test_unknown_fields_are_rejected_rather_than_ignored() -> None:
    with pytest.raises(ValidationError, match="dependOn"):
        parse_pipeline_spec(_step(taskRef={"name": "t"}, dependOn=["b"]))
    with pytest.raises(ValidationError, match="imagePullPolicy"):
        parse_task_spec({"image": "x", "imagePullPolicy": "Always"})


def test_retry_on_parses_from_plain_unquoted_yaml() -> None:
    # The field is not called `on`: YAML 1.1 (PyYAML, kubectl's go-yaml v2) reads a bare
    # `on:` key as the boolean true. `retryOn:` needs no quoting.
    task = parse_task_spec(
        yaml.safe_load("{image: x, retry: {limit: 1, retryOn: [Failed, Evicted]}}")
    )

    assert task.retry is not None
    assert task.retry.retry_on == [FailureKind.FAILED, FailureKind.EVICTED]
    assert dump(task)["retry"]["retryOn"] == ["Failed", "Evicted"]


@pytest.mark.parametrize(
    ("retry", "key"),
    [
        (yaml.safe_load("{on: [Failed]}"), True),  # PyYAML: YAML 1.1 reads bare `on` as true
        ({"true": ["Failed"]}, "true"),  # what kubectl (go-yaml v2) sends for bare `on:`
        (yaml.safe_load('{"on": [Failed]}'), "on"),  # quoted: the string "on"
    ],
    ids=["bare-pyyaml", "bare-kubectl", "quoted"],
)
def test_an_on_key_is_rejected_as_unknown_rather_than_ignored(retry: Any, key: Any) -> None:
    # Dropping it silently would retry every kind of failure, whatever the user asked for.
    assert list(retry) == [key]
    with pytest.raises(ValidationError) as info:
        parse_task_spec({"image": "x", "retry": retry})

    [error] = info.value.errors()
    if key is True:
        assert (error["loc"][0], error["type"]) == ("retry", "invalid_key")
    else:
        assert (error["loc"], error["type"]) == (("retry", key), "extra_forbidden")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("image", ""),
        ("timeoutSeconds", 0),
        ("retry", {"limit": -1}),
        ("retry", {"backoff": {"factor": 0.5}}),
        ("retry", {"backoff": {"initialSeconds": -1}}),
        ("retry", {"retryOn": ["OOMKilled"]}),
    ],
)
def test_out_of_range_task_values_are_rejected(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        parse_task_spec({"image": "x", field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("maxParallel", 0),
        ("failurePolicy", "Continue"),
        ("jobRetention", "Some"),
        ("timeoutSeconds", 0),
        ("ttlSecondsAfterFinished", -1),
    ],
)
def test_out_of_range_pipeline_values_are_rejected(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        parse_pipeline_spec({**_step(taskRef={"name": "t"}), field: value})


def test_python_attribute_names_are_accepted_as_well_as_camel_case() -> None:
    by_attr = PipelineTask(name="a", task_ref=TaskRef(name="t"), depends_on=["b"])
    by_alias = PipelineTask.model_validate(
        {"name": "a", "taskRef": {"name": "t"}, "dependsOn": ["b"]}
    )

    assert by_attr == by_alias


def test_free_form_kubernetes_fields_are_kept_verbatim() -> None:
    raw = {
        "image": "x",
        "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        "envFrom": [{"configMapRef": {"name": "cm"}}],
        "podTemplate": {
            "metadata": {"labels": {"team": "ml"}},
            "spec": {"nodeSelector": {"gpu": "true"}, "tolerations": [{"operator": "Exists"}]},
        },
    }

    assert _contains(dump(parse_task_spec(raw)), raw)


def test_failure_kinds_are_the_four_spec_values() -> None:
    assert [k.value for k in FailureKind] == ["Failed", "DeadlineExceeded", "Evicted", "PodFailure"]
    assert FailureKind("Evicted") == "Evicted"


# --- timestamps ---------------------------------------------------------------------------


def test_timestamps_serialise_as_rfc3339_utc_with_second_precision() -> None:
    plus_two = timezone(timedelta(hours=2))
    status = TaskStatus(name="a", started_at=datetime(2026, 11, 26, 16, 51, 56, 789, plus_two))

    assert dump(status)["startedAt"] == "2026-11-26T14:51:56Z"


def test_timestamps_parse_from_rfc3339_with_z_suffix() -> None:
    status = TaskStatus.model_validate({"name": "a", "nextRetryAt": "2026-11-26T14:51:56Z"})

    assert status.next_retry_at == datetime(2026, 11, 26, 14, 51, 56, tzinfo=UTC)


def test_parse_rfc3339_reads_what_rfc3339_writes() -> None:
    t = datetime(2026, 11, 26, 14, 51, 56, tzinfo=UTC)

    assert parse_rfc3339(rfc3339(t)) == t
    assert parse_rfc3339("2026-11-26T16:51:56+02:00") == t


def test_parsed_timestamps_are_utc_truncated_to_seconds() -> None:
    status = TaskStatus.model_validate({"name": "a", "startedAt": "2026-11-26T16:51:56.5+02:00"})

    assert status.started_at == datetime(2026, 11, 26, 14, 51, 56, tzinfo=UTC)
    assert status.started_at is not None and status.started_at.tzinfo is UTC


def test_naive_datetimes_are_taken_as_utc() -> None:
    condition = Condition(
        type="Succeeded",
        status="True",
        reason="AllTasksSucceeded",
        last_transition_time=datetime(2026, 11, 26, 14, 51, 56),
    )

    assert dump(condition)["lastTransitionTime"] == "2026-11-26T14:51:56Z"


# --- the module's surface -----------------------------------------------------------------


def test_every_exported_name_exists() -> None:
    missing = [name for name in api.__all__ if not hasattr(api, name)]

    assert missing == []


def test_group_version_and_plurals() -> None:
    assert (api.GROUP, api.VERSION) == ("sluice.dev", "v1alpha1")
    assert (api.PIPELINE_PLURAL, api.TASK_PLURAL) == ("pipelines", "tasks")
    assert api.API_VERSION == "sluice.dev/v1alpha1"
    assert (api.RETRY_ANNOTATION, api.RERUN_ANNOTATION) == ("sluice.dev/retry", "sluice.dev/rerun")


def test_dump_omits_unset_optionals_and_uses_camel_case() -> None:
    spec = PipelineSpec(
        tasks=[PipelineTask(name="a", task=TaskSpec(image="x", working_dir="/w"))],
        ttl_seconds_after_finished=60,
    )

    assert dump(spec) == {
        "tasks": [
            {
                "name": "a",
                "task": {"image": "x", "workingDir": "/w", "params": [], "results": []},
                "dependsOn": [],
                "params": [],
            }
        ],
        "finally": [],
        "results": [],
        "params": [],
        "failurePolicy": "ContinueIndependent",
        "suspend": False,
        "ttlSecondsAfterFinished": 60,
        "jobRetention": "Failed",
    }


# --- bounds and name patterns (mirrored in the CRD schema) ----------------------------------


@pytest.mark.parametrize("name", ["Foo", "a_b", "-a", "a..b", "x" * 254, ""])
def test_task_refs_that_are_not_dns_subdomains_are_rejected(name: str) -> None:
    with pytest.raises(ValidationError):
        parse_pipeline_spec({"tasks": [{"name": "a", "taskRef": {"name": name}}]})


@pytest.mark.parametrize("name", ["1x", "a b", "$x", "", "a/b", "ä"])
def test_parameter_names_that_no_reference_could_use_are_rejected(name: str) -> None:
    with pytest.raises(ValidationError):
        parse_task_spec({"image": "x", "params": [{"name": name}]})
    with pytest.raises(ValidationError):
        parse_pipeline_spec({"params": [{"name": name, "value": "v"}], "tasks": [{"name": "a"}]})


@pytest.mark.parametrize("name", ["x", "_x", "data.set", "learning-rate", "X_1"])
def test_parameter_names_usable_in_references_are_accepted(name: str) -> None:
    assert parse_task_spec({"image": "x", "params": [{"name": name}]}).params[0].name == name


@pytest.mark.parametrize(
    "retry",
    [
        {"limit": api.MAX_SECONDS + 1},
        {"backoff": {"initialSeconds": api.MAX_SECONDS + 1}},
        {"backoff": {"maxSeconds": 2**62}},
        {"backoff": {"factor": 1001}},
        {"backoff": {"factor": float("inf")}},
        {"backoff": {"factor": float("nan")}},
    ],
)
def test_retry_values_beyond_the_bounds_are_rejected(retry: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        parse_task_spec({"image": "x", "retry": retry})


def test_durations_beyond_an_int32_are_rejected_so_no_date_overflows() -> None:
    too_long = api.MAX_SECONDS + 1
    with pytest.raises(ValidationError):
        parse_task_spec({"image": "x", "timeoutSeconds": too_long})
    for field in ("timeoutSeconds", "ttlSecondsAfterFinished"):
        with pytest.raises(ValidationError):
            parse_pipeline_spec(
                {"tasks": [{"name": "a", "taskRef": {"name": "t"}}], field: too_long}
            )
    assert parse_task_spec({"image": "x", "timeoutSeconds": api.MAX_SECONDS}).timeout_seconds


@pytest.mark.parametrize(
    "image",
    [
        "busybox",
        "busybox:1.36",
        "ghcr.io/acme/churn-train:1.4",
        "localhost:5000/team/app:v1.2.3-rc.1",
        "registry.k8s.io/pause:3.9",
        "library/busybox@sha256:" + "a" * 64,
        "gcr.io/x/y:latest@sha256:" + "0" * 64,
        "[::1]:5000/foo",
        "a__b",
        "a--b.c_d",
        "Registry.Example.com/app",
    ],
)
def test_valid_image_references_match_the_image_pattern(image: str) -> None:
    assert re.fullmatch(api.IMAGE_PATTERN, image, re.ASCII)


@pytest.mark.parametrize(
    "image",
    [
        "Busybox",
        "busybox:",
        "busybox:1.36 ",
        " busybox",
        "busybox\n",
        "-x",
        "a/",
        "a//b",
        "a___b",
        ":tag",
        "busybox:ta g",
        "busybox@sha256:abc",
        "busybox:" + "x" * 129,
        "bü",
        "b\u0663",
    ],
)
def test_invalid_image_references_do_not_match_the_image_pattern(image: str) -> None:
    assert not re.fullmatch(api.IMAGE_PATTERN, image, re.ASCII)
