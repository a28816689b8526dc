"""Names and bounds of the Sluice API: group, version, kinds, annotations."""

from __future__ import annotations

from typing import Final

__all__ = [
    "API_VERSION",
    "GROUP",
    "MAX_SECONDS",
    "PIPELINE_KIND",
    "PIPELINE_PLURAL",
    "RERUN_ANNOTATION",
    "RETRY_ANNOTATION",
    "TASK_KIND",
    "TASK_PLURAL",
    "VERSION",
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

#: Upper bound of every duration in seconds: an int32, like the Kubernetes fields they
#: become, and small enough that no date computed from one overflows.
MAX_SECONDS: Final = 2**31 - 1
