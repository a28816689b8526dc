"""Fan-out (issue 15): a step's ``matrix`` and the compact status of a matrixed step.

A step with ``matrix.params`` runs once per combination of the params' values (their cross
product, in the order ``sluice.core.matrix`` documents), each combination its own Job.
A param takes its values from the spec (``values``) or from an earlier step's result, a
JSON array of strings (``fromResult``), known only once that step succeeded.

Bounds keep the CRD's CEL cost small: one constant-cost rule per matrix param (exactly one
of ``values`` and ``fromResult``), and everything that needs a width (``minSuccess`` above
it, the cap) is checked by the webhook and the operator (``sluice.core.validation.matrix``).
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import ConfigDict, Field, StringConstraints

from sluice.api.base import BY_NAME, Model
from sluice.api.enums import TaskPhase
from sluice.k8s.syntax import PARAM_NAME_PATTERN

__all__ = [
    "FROM_RESULT_PATTERN",
    "MAX_MATRIX_DETAILS",
    "MAX_MATRIX_PARAMS",
    "MAX_MATRIX_VALUES",
    "MIN_SUCCESS_PERCENT_PATTERN",
    "CombinationStatus",
    "Matrix",
    "MatrixParam",
    "MatrixStatus",
]

MAX_MATRIX_PARAMS: Final = 16
"""Params one matrix may have (Tekton has no such bound; 16 keeps CEL costs constant)."""
MAX_MATRIX_VALUES: Final = 1024
"""Values one static param may list (the width cap, 256 by default, is the real bound)."""
MAX_MATRIX_DETAILS: Final = 16
"""Combinations a step's status describes one by one (failed first, then running)."""

_LABEL: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
FROM_RESULT_PATTERN: Final = rf"^\$\(tasks\.{_LABEL}\.results\.{_LABEL}\)$"
"""``$(tasks.STEP.results.NAME)``, the whole value."""
MIN_SUCCESS_PERCENT_PATTERN: Final = r"^([1-9][0-9]?|100)%$"
"""``1%`` to ``100%``."""

_ParamName = Annotated[str, StringConstraints(pattern=PARAM_NAME_PATTERN, max_length=253)]
_MatrixValue = Annotated[str, StringConstraints(max_length=4096)]
_MinSuccess = (
    Annotated[int, Field(ge=1, strict=True)]
    | Annotated[str, StringConstraints(pattern=MIN_SUCCESS_PERCENT_PATTERN)]
)


class MatrixParam(Model):
    """One param of the matrix: its values, listed or from an earlier step's result."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.values) != has(self.fromResult)",
                    "message": "exactly one of values and fromResult must be set",
                    "messageExpression": "'matrix param \"' + self.name + '\": exactly one "
                    "of values and fromResult must be set'",
                }
            ]
        }
    )

    name: _ParamName = Field(
        description="Name of a param the step's Task declares; $(params.NAME) in the task."
    )
    values: list[_MatrixValue] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_MATRIX_VALUES,
        description="Its values, one combination each (times the other params' values).",
    )
    from_result: Annotated[str, StringConstraints(pattern=FROM_RESULT_PATTERN)] | None = Field(
        default=None,
        max_length=160,
        description="Its values from an earlier step's result holding a JSON array of "
        'strings, e.g. $(tasks.list.results.shards) = ["a","b"]; exclusive with values.',
    )


class Matrix(Model):
    """Fan-out: the step runs once per combination of the params' values."""

    params: list[MatrixParam] = Field(
        min_length=1,
        max_length=MAX_MATRIX_PARAMS,
        json_schema_extra=BY_NAME,
        description="The params to fan out over; the step runs for their cross product.",
    )
    max_parallel: int | None = Field(
        default=None,
        ge=1,
        description="Combinations running at once; the pipeline's maxParallel counts each "
        "running combination too. Default: no cap of its own.",
    )
    min_success: _MinSuccess | None = Field(
        default=None,
        json_schema_extra={
            "anyOf": [{"type": "integer"}, {"type": "string"}],  # >= 1: the webhook
            "x-kubernetes-int-or-string": True,
            "pattern": MIN_SUCCESS_PERCENT_PATTERN,
        },
        description='Combinations that must succeed, a count or a percentage such as "90%" '
        "(rounded up); the step succeeds once that many did and every other settled. "
        "Default: all.",
    )


class CombinationStatus(Model):
    """One failed, retrying or running combination of a matrixed step."""

    index: int = Field(ge=0, description="Its index in combination order.")
    phase: TaskPhase = Field(description="Its phase.")
    attempts: int = Field(default=0, ge=0, description="Attempts started so far.")
    job: str | None = Field(default=None, description="Name of the Job of its latest attempt.")
    reason: str | None = Field(default=None, description="Reason of its latest failure.")
    message: str | None = Field(
        default=None, max_length=256, description="Details of its latest failure (shortened)."
    )


class MatrixStatus(Model):
    """Where a matrixed step's combinations stand: counts, never one entry per combination."""

    width: int = Field(default=0, ge=0, description="Number of combinations (0: not known yet).")
    pending: int = Field(default=0, ge=0, description="Combinations not started yet.")
    running: int = Field(default=0, ge=0, description="Combinations running.")
    retrying: int = Field(default=0, ge=0, description="Combinations waiting to retry.")
    succeeded: int = Field(default=0, ge=0, description="Combinations that succeeded.")
    failed: int = Field(default=0, ge=0, description="Combinations failed past their retries.")
    done: str | None = Field(
        default=None,
        description='Indexes of the succeeded combinations as ranges, e.g. "0-36,40".',
    )
    reopened: str | None = Field(
        default=None,
        description="Indexes of failed combinations given a fresh budget (a fix or "
        "sluice.dev/retry) and not started again yet, as ranges.",
    )
    details: list[CombinationStatus] = Field(
        default_factory=list,
        max_length=MAX_MATRIX_DETAILS,
        description="Failed, retrying and running combinations, in that order (at most 16).",
    )
