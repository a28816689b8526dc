"""The Sluice API: pydantic mirrors of the ``sluice.dev/v1alpha1`` custom resources.

These models are the single source of truth for the API: ``hack/gen_crds.py`` derives the
CRD schemas (and the ``kubectl explain`` text) from them, so the API server and the operator
can never disagree about what a valid Pipeline or Task is.

The package: ``constants`` (group, kinds, annotations), ``enums``, ``times``, ``core_v1``
(the core/v1 sub-schemas), ``base``, ``matrix`` (fan-out) and ``models``; everything is
imported from here.
"""

from __future__ import annotations

from sluice.api.constants import (
    API_VERSION,
    GROUP,
    MAX_SECONDS,
    PIPELINE_KIND,
    PIPELINE_PLURAL,
    RERUN_ANNOTATION,
    RETRY_ANNOTATION,
    TASK_KIND,
    TASK_PLURAL,
    VERSION,
)
from sluice.api.enums import (
    ConditionStatus,
    FailureKind,
    FailurePolicy,
    JobRetention,
    PipelinePhase,
    TaskPhase,
)
from sluice.api.matrix import CombinationStatus, Matrix, MatrixParam, MatrixStatus
from sluice.api.models import (
    Backoff,
    ParamSpec,
    ParamValue,
    PipelineResult,
    PipelineSpec,
    PipelineTask,
    ResultSpec,
    RetryPolicy,
    TaskObjectSpec,
    TaskRef,
    TaskSpec,
    dump,
    parse_pipeline_spec,
    parse_task_spec,
)
from sluice.api.status import Condition, PipelineStatus, TaskStatus, parse_pipeline_status
from sluice.api.times import Timestamp, parse_rfc3339, rfc3339

# Kubernetes syntax has one home, sluice.k8s.syntax; its patterns are re-exported here
# because the schema is written with them.
from sluice.k8s.syntax import (
    DNS_LABEL_PATTERN,
    DNS_SUBDOMAIN_PATTERN,
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
    "CombinationStatus",
    "Condition",
    "ConditionStatus",
    "FailureKind",
    "FailurePolicy",
    "JobRetention",
    "Matrix",
    "MatrixParam",
    "MatrixStatus",
    "ParamSpec",
    "ParamValue",
    "PipelinePhase",
    "PipelineResult",
    "PipelineSpec",
    "PipelineStatus",
    "PipelineTask",
    "ResultSpec",
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
