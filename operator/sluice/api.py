"""The Sluice API: pydantic mirrors of the ``sluice.dev/v1alpha1`` custom resources.

These models are the single source of truth for the API: ``hack/gen_crds.py`` derives the
CRD schemas (and the ``kubectl explain`` text) from them, so the API server and the operator
can never disagree about what a valid Pipeline or Task is.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

from sluice.k8s.syntax import (
    DNS_LABEL_MAX,
    DNS_LABEL_PATTERN,
    DNS_SUBDOMAIN_MAX,
    DNS_SUBDOMAIN_PATTERN,
    IMAGE_MAX,
    IMAGE_MESSAGE,
    IMAGE_PATTERN,
    PARAM_NAME_PATTERN,
    QUANTITY_PATTERN,
)

__all__ = [
    "API_VERSION",
    "DNS_LABEL_PATTERN",
    "DNS_SUBDOMAIN_PATTERN",
    "GROUP",
    "IMAGE_MESSAGE",
    "IMAGE_PATTERN",
    "MAX_SECONDS",
    "PARAM_NAME_PATTERN",
    "PIPELINE_KIND",
    "PIPELINE_PLURAL",
    "QUANTITY_PATTERN",
    "RERUN_ANNOTATION",
    "RETRY_ANNOTATION",
    "TASK_KIND",
    "TASK_PLURAL",
    "VERSION",
    "Backoff",
    "Condition",
    "ConditionStatus",
    "FailureKind",
    "FailurePolicy",
    "JobRetention",
    "ParamSpec",
    "ParamValue",
    "PipelinePhase",
    "PipelineSpec",
    "PipelineStatus",
    "PipelineTask",
    "RetryPolicy",
    "TaskObjectSpec",
    "TaskPhase",
    "TaskRef",
    "TaskSpec",
    "TaskStatus",
    "Timestamp",
    "dump",
    "parse_pipeline_spec",
    "parse_pipeline_status",
    "parse_rfc3339",
    "parse_task_spec",
    "rfc3339",
]

GROUP: Final = "sluice.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
PIPELINE_KIND: Final = "Pipeline"
PIPELINE_PLURAL: Final = "pipelines"
TASK_KIND: Final = "Task"
TASK_PLURAL: Final = "tasks"

#: Annotations a user sets to a new value to ask for a retry of failed tasks / a fresh run.
RETRY_ANNOTATION: Final = f"{GROUP}/retry"
RERUN_ANNOTATION: Final = f"{GROUP}/rerun"

# Kubernetes syntax has one home, sluice.k8s.syntax; its patterns are re-exported here
# because the schema is written with them.
_MAX_IMAGE: Final = IMAGE_MAX

#: Upper bound of every duration in seconds: an int32, like the Kubernetes fields they
#: become, and small enough that no date computed from one overflows.
MAX_SECONDS: Final = 2**31 - 1

_DnsLabel = Annotated[str, StringConstraints(pattern=DNS_LABEL_PATTERN, max_length=DNS_LABEL_MAX)]
_DnsSubdomain = Annotated[
    str, StringConstraints(pattern=DNS_SUBDOMAIN_PATTERN, max_length=DNS_SUBDOMAIN_MAX)
]
_ParamName = Annotated[str, StringConstraints(pattern=PARAM_NAME_PATTERN, max_length=253)]
_FreeForm = dict[str, Any]

# Upper bounds on lists: they keep the API server's CEL cost estimates within budget.
_MAX_STEPS: Final = 1000
_MAX_PARAMS: Final = 200
_MAX_ENV: Final = 500
_MAX_ENV_FROM: Final = 100
_MAX_ARGS: Final = 1000
_MAX_CONDITIONS: Final = 32

# A list whose items are unique by `name`: the API server itself rejects duplicates.
_BY_NAME: Final[dict[str, Any]] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["name"],
}
_SET: Final[dict[str, Any]] = {"x-kubernetes-list-type": "set"}


# --- Kubernetes types kept as plain dicts in Python, with their structure in the CRD ---------
# The operator copies env, envFrom and resources into the Job verbatim, so Python keeps them
# as dicts; the CRD still spells their structure out, so the API server refuses a typo
# (`valeu:`), a number where Kubernetes wants a string, or a malformed quantity at apply time
# instead of the Job creation failing later.


def _str(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


_QUANTITY: Final[dict[str, Any]] = {
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "pattern": QUANTITY_PATTERN,
    "x-kubernetes-int-or-string": True,
}
_RESOURCE_LIST_PROPERTIES: Final = 32
_ENV_VAR_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "name": _str("Name of the variable.", minLength=1),
        "value": _str("Value of the variable; may use $(params.X)."),
        "valueFrom": {
            "type": "object",
            "description": "Source of the value (Kubernetes EnvVarSource); exclusive with value.",
        },
    },
    "required": ["name"],
    "x-kubernetes-validations": [
        {
            "rule": "!(has(self.value) && has(self.valueFrom))",
            "message": "an env variable has a value or a valueFrom, not both",
        }
    ],
}


def _source_ref(kind: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"The {kind} to take every key of as a variable.",
        "properties": {
            "name": _str(f"Name of the {kind}.", minLength=1),
            "optional": {"type": "boolean", "description": f"Whether the {kind} may be absent."},
        },
        "required": ["name"],
    }


_ENV_FROM_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "prefix": _str("Prefix added to every variable name."),
        "configMapRef": _source_ref("ConfigMap"),
        "secretRef": _source_ref("Secret"),
    },
    "x-kubernetes-validations": [
        {
            "rule": "has(self.configMapRef) != has(self.secretRef)",
            "message": "an envFrom source has exactly one of configMapRef and secretRef",
        }
    ],
}
_RESOURCES_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "limits": {
            "type": "object",
            "description": "Most of each resource the container may use, e.g. cpu: 2, memory: 4Gi.",
            "maxProperties": _RESOURCE_LIST_PROPERTIES,
            "additionalProperties": _QUANTITY,
        },
        "requests": {
            "type": "object",
            "description": "Resources the scheduler reserves for the container.",
            "maxProperties": _RESOURCE_LIST_PROPERTIES,
            "additionalProperties": _QUANTITY,
        },
        "claims": {
            "type": "array",
            "description": "Dynamic resource claims of the pod the container uses.",
            "maxItems": 16,
            "items": {
                "type": "object",
                "properties": {
                    "name": _str("Name of a resource claim of the pod.", minLength=1),
                    "request": _str("Request of the claim to use."),
                },
                "required": ["name"],
            },
        },
    },
}
_EnvVar = Annotated[_FreeForm, WithJsonSchema(_ENV_VAR_SCHEMA)]
_EnvFromSource = Annotated[_FreeForm, WithJsonSchema(_ENV_FROM_SCHEMA)]
_Resources = Annotated[_FreeForm, WithJsonSchema(_RESOURCES_SCHEMA)]


def _utc_seconds(value: datetime) -> datetime:
    # Kubernetes timestamps have second precision; truncating on the way in keeps a parsed
    # status equal to the one we wrote, so reconciles stay idempotent. Naive means UTC.
    if value.tzinfo is UTC and not value.microsecond:
        return value  # already so: the common case, on every status parse and dump
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)


def rfc3339(value: datetime) -> str:
    """A time as Kubernetes writes it: "2026-11-26T14:51:56Z" (UTC, whole seconds)."""
    # isoformat() of a whole-second UTC time is "YYYY-MM-DDTHH:MM:SS+00:00";
    # twice as fast as strftime, and this runs for every timestamp of every status.
    return _utc_seconds(value).isoformat()[:19] + "Z"


def parse_rfc3339(value: str) -> datetime:
    """A Kubernetes time ("2026-11-26T14:51:56Z", or with an offset) as an aware datetime."""
    return datetime.fromisoformat(value)  # reads the "Z" suffix since Python 3.11


#: A point in time as Kubernetes writes it: UTC, whole seconds, "2026-11-26T14:51:56Z".
Timestamp = Annotated[
    datetime,
    AfterValidator(_utc_seconds),
    PlainSerializer(rfc3339, return_type=str, when_used="json"),
]


class TaskPhase(StrEnum):
    """Where a step stands in a run."""

    PENDING = "Pending"
    """Not started: waiting for its dependencies, a slot, or the first reconcile."""
    RUNNING = "Running"
    """An attempt's Job is running."""
    RETRYING = "Retrying"
    """An attempt failed; the next one starts at ``nextRetryAt``."""
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    """Failed past its retry budget (or not retryable): waits for a fix or a retry."""
    BLOCKED = "Blocked"
    """A step it depends on failed."""
    SKIPPED = "Skipped"
    """Never started: the pipeline timed out first."""


class PipelinePhase(StrEnum):
    """Where a run stands."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    DEGRADED = "Degraded"
    """A step failed past its retries; the run waits for a fix."""
    FAILED = "Failed"
    """Terminal: an invalid spec (until fixed) or a timeout (until a rerun)."""


FailurePolicy = Literal["ContinueIndependent", "StopAll"]
JobRetention = Literal["Failed", "All", "None"]
ConditionStatus = Literal["True", "False", "Unknown"]


class _Model(BaseModel):
    """camelCase on the wire like every Kubernetes API; typos are errors, not silently dropped."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class FailureKind(StrEnum):
    """Why an attempt failed: retry policies pick which kinds deserve another attempt."""

    FAILED = "Failed"
    """The container exited non-zero."""
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    """The attempt ran past its timeout."""
    EVICTED = "Evicted"
    """The pod was disrupted: eviction, preemption or node loss."""
    POD_FAILURE = "PodFailure"
    """The pod or Job vanished or failed for another reason than its container's exit."""


class Backoff(_Model):
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


class RetryPolicy(_Model):
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


class ParamSpec(_Model):
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


class ParamValue(_Model):
    """A value given to a parameter by a Pipeline or one of its steps."""

    name: _ParamName = Field(description="Name of the parameter.")
    value: str = Field(description="Value of the parameter.")


class TaskRef(_Model):
    """Points a step at a reusable Task in the pipeline's namespace."""

    name: _DnsSubdomain = Field(
        description="Name of a Task in the same namespace as the Pipeline.",
    )


class TaskSpec(_Model):
    """What one task runs: the Job's container plus retry and timeout policy."""

    image: str = Field(
        min_length=1,
        max_length=_MAX_IMAGE,
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
    env: list[_EnvVar] | None = Field(
        default=None,
        max_length=_MAX_ENV,
        description="Environment variables (Kubernetes EnvVar list); may use $(params.X).",
    )
    env_from: list[_EnvFromSource] | None = Field(
        default=None,
        max_length=_MAX_ENV_FROM,
        description="Sources of environment variables (Kubernetes EnvFromSource list).",
    )
    resources: _Resources | None = Field(
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
    params: list[ParamSpec] = Field(
        default_factory=list,
        max_length=_MAX_PARAMS,
        json_schema_extra=_BY_NAME,
        description="Parameters the task accepts.",
    )


class TaskObjectSpec(TaskSpec):
    """The spec of a Task object: a TaskSpec whose image the API server checks in CEL.

    Only here: for the up to 1000 inline tasks of a Pipeline the regular expression would
    exceed the API server's CEL cost budget, so there the webhook (and the operator) check
    the same pattern, with the same message.
    """

    image: str = Field(
        min_length=1,
        max_length=_MAX_IMAGE,
        description="Container image to run, e.g. busybox:1.36 or ghcr.io/acme/etl@sha256:...",
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": f"self.matches(r'{IMAGE_PATTERN}')", "message": IMAGE_MESSAGE}
            ]
        },
    )


class PipelineTask(_Model):
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
                    "message": "a task cannot depend on itself",
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
        max_length=_MAX_STEPS,
        json_schema_extra=_SET,
        description="Steps that must succeed before this one starts.",
    )
    params: list[ParamValue] = Field(
        default_factory=list,
        max_length=_MAX_PARAMS,
        json_schema_extra=_BY_NAME,
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

    @model_validator(mode="after")
    def _exactly_one_task(self) -> Self:
        if (self.task_ref is None) == (self.task is None):
            raise ValueError(f"task {self.name!r}: exactly one of taskRef and task must be set")
        return self


class PipelineSpec(_Model):
    """The desired DAG and how to run it."""

    tasks: list[PipelineTask] = Field(
        min_length=1,
        max_length=_MAX_STEPS,
        json_schema_extra=_BY_NAME,
        description="Steps of the pipeline; dependsOn edges between them form a DAG.",
    )
    params: list[ParamValue] = Field(
        default_factory=list,
        max_length=_MAX_PARAMS,
        json_schema_extra=_BY_NAME,
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


class Condition(_Model):
    """A Kubernetes-convention condition, so generic tooling (kubectl wait) understands us."""

    type: str = Field(description="Type of the condition, e.g. Succeeded, Progressing, Degraded.")
    status: ConditionStatus = Field(description="Whether the condition holds.")
    reason: str = Field(description="Machine-readable reason of the last transition (CamelCase).")
    message: str = Field(default="", description="Human-readable details of the last transition.")
    last_transition_time: Timestamp = Field(description="When the condition last changed status.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="Pipeline generation the condition was computed from."
    )


class TaskStatus(_Model):
    """Where one step stands in the current run; the operator's memory across restarts."""

    name: str = Field(description="Name of the step.")
    phase: TaskPhase = Field(
        default=TaskPhase.PENDING, description="Phase of the step in this run."
    )
    attempts: int = Field(default=0, ge=0, description="Attempts started so far in this run.")
    job: str | None = Field(default=None, description="Name of the Job of the latest attempt.")
    started_at: Timestamp | None = Field(
        default=None, description="When the first attempt started."
    )
    finished_at: Timestamp | None = Field(default=None, description="When the step finished.")
    next_retry_at: Timestamp | None = Field(
        default=None, description="When the next attempt starts, while the step is Retrying."
    )
    reason: str | None = Field(
        default=None,
        description="Reason of the latest failure, e.g. BackoffLimitExceeded, OOMKilled.",
    )
    message: str | None = Field(
        default=None, description="Details of the latest failure, in the Job's or pod's own words."
    )
    spec_hash: str | None = Field(
        default=None, description="Hash of the resolved task definition the latest attempt ran."
    )
    retry_base: int = Field(
        default=0, ge=0, description="Attempt count at which the current retry budget began."
    )


class PipelineStatus(_Model):
    """The observed state of the current run, written only by the operator."""

    phase: PipelinePhase | None = Field(
        default=None,
        description=(
            "Phase of the run: Pending, Running, Succeeded, Degraded (a step failed past its "
            "retries and waits for a fix) or Failed (terminal)."
        ),
    )
    run: int = Field(default=0, ge=0, description="Run number, incremented by each fresh run.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="Pipeline generation the status was computed from."
    )
    started_at: Timestamp | None = Field(default=None, description="When the run started.")
    finished_at: Timestamp | None = Field(default=None, description="When the run finished.")
    progress: str | None = Field(
        default=None, description="Succeeded steps over all steps, e.g. 4/6."
    )
    message: str | None = Field(default=None, description="One sentence on the state of the run.")
    tasks: list[TaskStatus] = Field(
        default_factory=list,
        max_length=_MAX_STEPS,
        json_schema_extra=_BY_NAME,
        description="State of each step in the current run.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=_MAX_CONDITIONS,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
        description="Standard conditions: Succeeded, Progressing, Degraded.",
    )
    handled_retry: str | None = Field(
        default=None, description=f"Value of the {RETRY_ANNOTATION} annotation already acted on."
    )
    handled_rerun: str | None = Field(
        default=None, description=f"Value of the {RERUN_ANNOTATION} annotation already acted on."
    )


def parse_task_spec(d: Mapping[str, Any]) -> TaskSpec:
    """Validate a Task's ``spec``; raises ``pydantic.ValidationError`` naming the bad field."""
    return TaskSpec.model_validate(dict(d))


def parse_pipeline_spec(d: Mapping[str, Any]) -> PipelineSpec:
    """Validate a Pipeline's ``spec``; raises ``pydantic.ValidationError`` naming the bad field."""
    return PipelineSpec.model_validate(dict(d))


def parse_pipeline_status(d: Mapping[str, Any] | None) -> PipelineStatus:
    """Read a Pipeline's ``status``; a new Pipeline has none, which reads as the empty status."""
    return PipelineStatus.model_validate(dict(d or {}))


def dump(model: BaseModel) -> dict[str, Any]:
    """Serialise for the API server: camelCase, unset optionals omitted, RFC 3339 times."""
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")
