"""The pydantic models of the ``sluice.dev/v1alpha1`` specs (see ``sluice.api``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from sluice.api import schedule_fields as fields
from sluice.api.base import BY_NAME, Model
from sluice.api.base import SET as _SET
from sluice.api.constants import MAX_SECONDS
from sluice.api.core_v1 import EnvFromSource, EnvVar, Resources
from sluice.api.enums import FailureKind, FailurePolicy, JobRetention
from sluice.api.matrix import Matrix
from sluice.api.schedule import CachePolicy, Schedule
from sluice.k8s.syntax import (
    DNS_LABEL_MAX,
    DNS_LABEL_PATTERN,
    DNS_SUBDOMAIN_MAX,
    DNS_SUBDOMAIN_PATTERN,
    IMAGE_MAX,
    IMAGE_MESSAGE,
    IMAGE_PATTERN,
    PARAM_NAME_PATTERN,
)

__all__ = [
    "BY_NAME",
    "MAX_STEPS",
    "Backoff",
    "Matrix",
    "Model",
    "ParamSpec",
    "ParamValue",
    "PipelineResult",
    "PipelineSpec",
    "PipelineTask",
    "ResultSpec",
    "RetryPolicy",
    "TaskObjectSpec",
    "TaskRef",
    "TaskSpec",
    "dump",
    "parse_pipeline_spec",
    "parse_task_spec",
]

_DnsLabel = Annotated[str, StringConstraints(pattern=DNS_LABEL_PATTERN, max_length=DNS_LABEL_MAX)]
_DnsSubdomain = Annotated[
    str, StringConstraints(pattern=DNS_SUBDOMAIN_PATTERN, max_length=DNS_SUBDOMAIN_MAX)
]
_ParamName = Annotated[str, StringConstraints(pattern=PARAM_NAME_PATTERN, max_length=253)]
_FreeForm = dict[str, Any]

# Upper bounds on lists: they keep the API server's CEL cost estimates within budget.
MAX_STEPS: Final = 1000
_MAX_PARAMS: Final = 200
_MAX_ENV: Final = 500
_MAX_ENV_FROM: Final = 100
_MAX_ARGS: Final = 1000
MAX_RESULTS: Final = 16  # results one task may declare
MAX_PIPELINE_RESULTS, MAX_FINALLY = 64, 100
MAX_TEXT: Final = 4096  # a `when`, a pipeline result's value


class Backoff(Model):
    """Growing delays between attempts, so a struggling dependency is not hammered."""

    initial_seconds: int = Field(
        default=10, ge=0, le=MAX_SECONDS, description="Delay before the first retry, in seconds."
    )
    factor: float = Field(
        default=2.0,
        ge=1,
        le=1000,
        allow_inf_nan=False,
        description="Multiplier applied to the delay after each retry.",
    )
    max_seconds: int = Field(
        default=600,
        ge=0,
        le=MAX_SECONDS,
        description="Upper bound on the delay between two attempts, in seconds.",
    )


class RetryPolicy(Model):
    """Which failures are worth another attempt, how many times, and how patiently."""

    limit: int = Field(
        default=2,
        ge=0,
        le=MAX_SECONDS,
        description="Extra attempts after the first one; 0 disables retries.",
    )
    backoff: Backoff = Field(
        default_factory=Backoff, description="Delay between attempts (exponential, capped)."
    )
    # Not `on`: YAML 1.1 parsers (kubectl's go-yaml v2, PyYAML) read an unquoted `on:` key
    # as the boolean true. Istio's `retries.retryOn` is the precedent for the name.
    retry_on: list[FailureKind] = Field(
        default=[
            FailureKind.FAILED,
            FailureKind.DEADLINE_EXCEEDED,
            FailureKind.EVICTED,
            FailureKind.POD_FAILURE,
        ],
        max_length=len(FailureKind),
        json_schema_extra=_SET,
        description=(
            "Which kinds of failure get another attempt: Failed (the container exited "
            "non-zero), DeadlineExceeded (the attempt timed out), Evicted (the pod was "
            "evicted, preempted or lost its node), PodFailure (the pod or Job vanished or "
            "failed for another reason, e.g. it was deleted). Defaults to all kinds; a failure "
            "of a kind left out fails the task without retrying."
        ),
    )


class ParamSpec(Model):
    """A parameter a Task declares, so a Pipeline can reuse it with different inputs."""

    name: _ParamName = Field(
        description=(
            "Parameter name, referenced as $(params.NAME) in the task: a letter or '_', then "
            "letters, digits, '_', '.' or '-'."
        )
    )
    default: str | None = Field(
        default=None, description="Value used when neither the step nor the pipeline sets one."
    )
    description: str | None = Field(
        default=None, description="What the parameter is for (documentation only)."
    )


class ParamValue(Model):
    """A value given to a parameter by a Pipeline or one of its steps."""

    name: _ParamName = Field(description="Name of the parameter.")
    value: str = Field(description="Value of the parameter.")


class ResultSpec(Model):
    """A result a task reports: a small string its ``main`` container writes, as one JSON
    object of strings, to its termination message file (``$SLUICE_RESULTS_PATH``)."""

    name: _DnsLabel = Field(description="Name (a DNS label): $(tasks.STEP.results.NAME).")
    description: str | None = Field(default=None, description="What the result holds.")


class PipelineResult(Model):
    """A result of the whole run, from the steps' results."""

    name: _DnsLabel = Field(description="Name of the pipeline result (a DNS label).")
    value: str = Field(max_length=MAX_TEXT, description="Its value, e.g. $(tasks.t.results.uri).")


class TaskRef(Model):
    """Points a step at a reusable Task in the pipeline's namespace."""

    name: _DnsSubdomain = Field(
        description="Name of a Task in the same namespace as the Pipeline.",
    )


def _pending(description: str) -> Any:
    return Field(default=None, ge=1, le=MAX_SECONDS, description=description)


class TaskSpec(Model):
    """What one task runs: the Job's container plus retry and timeout policy."""

    image: str = Field(
        min_length=1,
        max_length=IMAGE_MAX,
        description="Container image to run, e.g. busybox:1.36 or ghcr.io/acme/etl@sha256:...",
    )
    command: list[str] | None = Field(
        default=None,
        max_length=_MAX_ARGS,
        description="Entrypoint (replaces the image's ENTRYPOINT); may use $(params.X).",
    )
    args: list[str] | None = Field(
        default=None,
        max_length=_MAX_ARGS,
        description="Arguments to the entrypoint (replace the image's CMD); may use $(params.X).",
    )
    env: list[EnvVar] | None = Field(
        default=None,
        max_length=_MAX_ENV,
        description="Environment variables (Kubernetes EnvVar list); may use $(params.X).",
    )
    env_from: list[EnvFromSource] | None = Field(
        default=None,
        max_length=_MAX_ENV_FROM,
        description="Sources of environment variables (Kubernetes EnvFromSource list).",
    )
    resources: Resources | None = Field(
        default=None,
        description="Compute resources of the container (Kubernetes ResourceRequirements).",
    )
    working_dir: str | None = Field(default=None, description="Working directory of the container.")
    service_account_name: _DnsSubdomain | None = Field(
        default=None, description="ServiceAccount the task's pods run as."
    )
    pod_template: _FreeForm | None = Field(
        default=None,
        description=(
            "Fragment of a PodTemplateSpec merged into the Job's pod: metadata.labels and "
            "metadata.annotations, and spec fields such as nodeSelector, tolerations, "
            "volumes and securityContext."
        ),
    )
    retry: RetryPolicy | None = Field(
        default=None,
        description="Retry policy for failed attempts; when absent the defaults apply.",
    )
    timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_SECONDS,
        description="Time limit of one attempt, in seconds (the Job's activeDeadlineSeconds).",
    )
    pending_timeout_seconds: int | None = _pending(
        "Time an attempt may wait for its pod to start (an image that does not pull, a missing "
        "ConfigMap, no node that fits, a quota); then it fails (PodFailure) and is retried."
    )
    params: list[ParamSpec] = Field(
        default_factory=list,
        max_length=_MAX_PARAMS,
        json_schema_extra=BY_NAME,
        description="Parameters the task accepts.",
    )
    results: list[ResultSpec] = Field(
        default_factory=list,
        max_length=MAX_RESULTS,
        json_schema_extra=BY_NAME,
        description="Results it reports: one JSON object of strings written to "
        "$SLUICE_RESULTS_PATH (the termination message, at most 4096 bytes).",
    )
    cache_version: str | None = fields.cache_version()


class TaskObjectSpec(TaskSpec):
    """The spec of a Task object: a TaskSpec whose image the API server checks in CEL.

    Only here: for the up to 1000 inline tasks of a Pipeline the regular expression would
    exceed the API server's CEL cost budget, so there the webhook (and the operator) check
    the same pattern, with the same message.
    """

    image: str = Field(
        min_length=1,
        max_length=IMAGE_MAX,
        description="Container image to run, e.g. busybox:1.36 or ghcr.io/acme/etl@sha256:...",
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": f"self.matches(r'{IMAGE_PATTERN}')", "message": IMAGE_MESSAGE}
            ]
        },
    )


class PipelineTask(Model):
    """A step of the pipeline's DAG: a Task (by reference or inline) and its inputs."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.taskRef) != has(self.task)",
                    "message": "exactly one of taskRef and task must be set",
                },
                {
                    "rule": "!has(self.dependsOn) || !(self.name in self.dependsOn)",
                    "message": "a step cannot depend on itself",
                    # Names the step: the API server's path only says spec.tasks[N].
                    "messageExpression": "'step \"' + self.name + '\" cannot depend on itself'",
                },
            ]
        }
    )

    name: _DnsLabel = Field(
        description="Name of the step, unique in the pipeline (a DNS label: a-z, 0-9 and '-')."
    )
    task_ref: TaskRef | None = Field(
        default=None, description="Reference to a Task to run; exclusive with task."
    )
    task: TaskSpec | None = Field(
        default=None, description="Inline Task spec to run; exclusive with taskRef."
    )
    depends_on: list[_DnsLabel] = Field(
        default_factory=list,
        max_length=MAX_STEPS,
        json_schema_extra=_SET,
        description="Steps that must succeed before this one starts.",
    )
    params: list[ParamValue] = Field(
        default_factory=list,
        max_length=_MAX_PARAMS,
        json_schema_extra=BY_NAME,
        description="Parameter values for this step; they take precedence over the pipeline's.",
    )
    retry: RetryPolicy | None = Field(
        default=None,
        description="Retry policy for this step; replaces the Task's retry policy as a whole.",
    )
    timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_SECONDS,
        description="Time limit of one attempt of this step, in seconds; overrides the Task's.",
    )
    pending_timeout_seconds: int | None = _pending("Overrides the Task's pendingTimeoutSeconds.")
    when: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_TEXT,
        description="CEL condition, evaluated once its dependencies settled; false: Skipped. "
        "E.g. double(tasks.evaluate.results.auc) >= 0.8",
    )
    matrix: Matrix | None = Field(
        default=None,
        description="Fan-out: run the step once per combination of these params, each its "
        "own Job; its results become JSON arrays in combination order.",
    )
    cache: CachePolicy | None = fields.step_cache()

    @model_validator(mode="after")
    def _exactly_one_task(self) -> Self:
        if (self.task_ref is None) == (self.task is None):
            raise ValueError(f"task {self.name!r}: exactly one of taskRef and task must be set")
        return self


class PipelineSpec(Model):
    """The desired DAG and how to run it."""

    tasks: list[PipelineTask] = Field(
        min_length=1,
        max_length=MAX_STEPS,
        json_schema_extra=BY_NAME,
        description="Steps of the pipeline; dependsOn edges between them form a DAG.",
    )
    finally_: list[PipelineTask] = Field(
        default_factory=list,
        alias="finally",
        max_length=MAX_FINALLY,
        json_schema_extra=BY_NAME,
        description="Steps run once the main steps settled, however the run ended "
        "($(tasks.status): Succeeded, Degraded or Timeout); main steps cannot depend on them.",
    )
    results: list[PipelineResult] = Field(
        default_factory=list,
        max_length=MAX_PIPELINE_RESULTS,
        json_schema_extra=BY_NAME,
        description="Results of the run, resolved into status.results when it succeeds.",
    )
    params: list[ParamValue] = Field(
        default_factory=list,
        max_length=_MAX_PARAMS,
        json_schema_extra=BY_NAME,
        description="Pipeline parameters, passed down to every step that declares them.",
    )
    max_parallel: int | None = Field(
        default=None,
        ge=1,
        description="Maximum number of steps running at once; default unlimited.",
    )
    failure_policy: FailurePolicy = Field(
        default="ContinueIndependent",
        description=(
            "What happens when a step fails for good: ContinueIndependent runs the steps that "
            "do not depend on it; StopAll starts nothing new."
        ),
    )
    timeout_seconds: int | None = Field(
        default=None, ge=1, le=MAX_SECONDS, description="Time limit of the whole run, in seconds."
    )
    pending_timeout_seconds: int | None = _pending("Steps' pendingTimeoutSeconds when unset.")
    suspend: bool = Field(
        default=False,
        strict=True,  # not "yes", "1" or "on": the schema says boolean, so does the operator
        description="Pause the pipeline: no new Jobs are started; running ones finish.",
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None,
        ge=0,
        le=MAX_SECONDS,
        description="Delete the Jobs of a finished run this many seconds after it finishes.",
    )
    job_retention: JobRetention = Field(
        default="Failed",
        description=(
            "Which Jobs the TTL cleanup keeps: Failed (those of failed steps, for debugging), "
            "All, or None."
        ),
    )
    schedule: Schedule | None = fields.schedule()
    history_limit: int | None = fields.history_limit()
    cache: CachePolicy | None = fields.pipeline_cache()


def parse_task_spec(d: Mapping[str, Any]) -> TaskSpec:
    """Validate a Task's ``spec``; raises ``pydantic.ValidationError`` naming the bad field."""
    return TaskSpec.model_validate(dict(d))


def parse_pipeline_spec(d: Mapping[str, Any]) -> PipelineSpec:
    """Validate a Pipeline's ``spec``; raises ``pydantic.ValidationError`` naming the bad field."""
    return PipelineSpec.model_validate(dict(d))


def dump(model: BaseModel) -> dict[str, Any]:
    """Serialise for the API server: camelCase, unset optionals omitted, RFC 3339 times."""
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")
