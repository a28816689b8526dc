"""Everything wrong with a Pipeline or a Task, in words that name the problem.

One set of checks, two callers, one wording:

* the admission webhook (``sluice.shell.admission``) refuses a bad object at
  ``kubectl apply`` with :meth:`Report.refusal`;
* the reconciler fails a pipeline that reached it anyway (the webhook was down
  or off, the object predates it) with the same message (:func:`invalid_message`
  over the same findings, in the same order).

The CRD schema and its CEL rules run first, in the API server; what they check
(types, enums, bounds, name patterns, unique names, exactly one of ``taskRef``
and ``task``, no self-dependency) is checked here again only so that the
operator stays total on objects that never met the schema. What the schema
cannot say is checked here: cycles (named: ``cycle: a -> b -> a``), unknown
``dependsOn`` names, ``$(params.x)`` references that nothing declares, params
without a value, image references, env/envFrom/resources details that would
make the Job creation fail, the pod template fragment, names that cannot form a
Job name, and a pipeline too big for its status to fit.

Errors and warnings
    An *error* means the pipeline cannot run as written. A *warning* names
    something that is probably a mistake but runs (a parameter a step sets that
    its Task does not declare: it is ignored).

    An error is *external* when it depends on another object, a Task, that may
    legitimately be applied or changed later (``kubectl apply -f dir/`` applies
    files alphabetically, so a Pipeline often comes before its Tasks). The
    webhook therefore refuses a Pipeline only for what is wrong in the Pipeline
    itself and turns external errors into warnings; the operator treats them as
    errors (the pipeline fails with ``InvalidSpec`` and starts once they are
    fixed).

The package: ``report`` (findings and their words), ``k8s`` (core/v1 shapes, checked
against the pinned Kubernetes' schemas), ``task`` and ``pipeline``; this module is its
public face (``kubectl sluice lint``, the webhook and the reconciler import from here).

Everything here is pure and total: any JSON value in, findings out; nothing
raises. Quoted user values are shortened so messages (and the status that
holds them) stay small whatever the input.
"""

from __future__ import annotations

from sluice.core.validation.pipeline import check_pipeline
from sluice.core.validation.report import (
    MAX_LISTED,
    MAX_OBJECT_BYTES,
    STATUS_BYTES_PER_TASK,
    Finding,
    Report,
    Severity,
    invalid_message,
)
from sluice.core.validation.task import check_task
from sluice.k8s.syntax import parse_quantity

__all__ = [
    "MAX_LISTED",
    "MAX_OBJECT_BYTES",
    "STATUS_BYTES_PER_TASK",
    "Finding",
    "Report",
    "Severity",
    "check_pipeline",
    "check_task",
    "invalid_message",
    "parse_quantity",
]
