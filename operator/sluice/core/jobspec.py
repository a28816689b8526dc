"""A pipeline step, resolved against its Task and params, as a batch/v1 Job manifest.

Kept apart from the reconciler (as dask-kubernetes keeps its ``build_*_spec``
functions apart from its handlers) so the manifest can be tested on its own
and the reconciler only decides *whether* to create a Job, never *how*.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sluice.api import API_VERSION, PIPELINE_KIND, Matrix, PipelineTask, RetryPolicy, TaskSpec
from sluice.core import naming, params, references
from sluice.core.references import Ref
from sluice.core.results import RESULTS_PATH_ENV, TERMINATION_MESSAGE_PATH

__all__ = [
    "CONTAINER_NAME",
    "Combo",
    "ResolvedStep",
    "build_job",
    "resolve_step",
]

CONTAINER_NAME = "main"

# backoffLimit 0 + these rules: the Job fails on the first pod failure and its
# Failed condition carries the reason in the Job controller's own words (the exit
# code, or the disruption), which retry.classify_job_failure reads. Sluice, not
# the Job controller, decides about retries.
_POD_FAILURE_POLICY: dict[str, Any] = {
    "rules": [
        {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget"}]},
        {"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [0]}},
    ]
}


@dataclass(frozen=True)
class ResolvedStep:
    """Everything needed to start an attempt of a step: its pod template,
    deadline and retry policy, and a hash that changes when any of them does."""

    name: str
    pod_template: dict[str, Any]
    timeout_seconds: int | None
    retry: RetryPolicy
    spec_hash: str
    pending_timeout_seconds: int | None = None
    """How long an attempt may wait for its pod to start (step, else Task, else pipeline)."""
    results: tuple[str, ...] = ()
    """The result names its task declares (its Job reports them: ``core.results``)."""
    matrix: Matrix | None = None
    """Its fan-out (issue 15): the template keeps ``$(params.NAME)`` of the matrix params,
    which each combination's Job fills in (:func:`build_job`'s ``combination``)."""
    params: tuple[tuple[str, str | None], ...] = ()
    """A matrixed step's Task params ``(name, default)`` (``matrix.combination_params``)."""
    step_values: tuple[tuple[str, str], ...] = ()
    """A matrixed step's own param values."""


def _subst_all(values: list[str] | None, env: dict[str, str]) -> list[str] | None:
    return None if values is None else [params.substitute(v, env) for v in values]


def _report_results(container: dict[str, Any]) -> None:
    """Where ``main`` writes its results. Only for steps that declare results, so the
    template (and the hash) of every other step stays what it was."""
    container["terminationMessagePath"] = TERMINATION_MESSAGE_PATH
    env = container.setdefault("env", [])
    if not any(v.get("name") == RESULTS_PATH_ENV for v in env):
        env.append({"name": RESULTS_PATH_ENV, "value": TERMINATION_MESSAGE_PATH})


def resolve_step(
    step: PipelineTask,
    task: TaskSpec,
    pipeline_params: dict[str, str],
    pending_default: int | None = None,
) -> ResolvedStep:
    """Apply params and overrides; raises params.MissingParamError for unset params."""
    declared = [(p.name, p.default) for p in task.params]
    step_values = {p.name: p.value for p in step.params}
    values = _values(step, declared, step_values, pipeline_params)
    container: dict[str, Any] = {"name": CONTAINER_NAME, "image": task.image}
    if task.command is not None:
        container["command"] = _subst_all(task.command, values)
    if task.args is not None:
        container["args"] = _subst_all(task.args, values)
    if task.env is not None:
        env = []
        for var in task.env:
            var = dict(var)
            if isinstance(var.get("value"), str):
                var["value"] = params.substitute(var["value"], values)
            env.append(var)
        container["env"] = env
    if task.results:
        _report_results(container)
    if task.env_from is not None:
        container["envFrom"] = [dict(e) for e in task.env_from]
    if task.resources is not None:
        container["resources"] = copy.deepcopy(task.resources)
    if task.working_dir is not None:
        container["workingDir"] = task.working_dir

    fragment = copy.deepcopy(task.pod_template or {})
    metadata = dict(fragment.get("metadata") or {})
    pod_spec = dict(fragment.get("spec") or {})
    # The user's fragment may add sidecars or set container fields of `main`;
    # ours wins for what defines the attempt (image, command, args...).
    extra_containers = [
        c for c in pod_spec.get("containers", []) if c.get("name") != CONTAINER_NAME
    ]
    base: dict[str, Any] = next(
        (c for c in pod_spec.get("containers", []) if c.get("name") == CONTAINER_NAME), {}
    )
    pod_spec["containers"] = [{**base, **container}, *extra_containers]
    pod_spec["restartPolicy"] = "Never"
    if task.service_account_name is not None:
        pod_spec["serviceAccountName"] = task.service_account_name
    template = {"metadata": metadata, "spec": pod_spec}

    timeout = step.timeout_seconds if step.timeout_seconds is not None else task.timeout_seconds
    retry = step.retry or task.retry or RetryPolicy()
    digest = hashlib.sha256(
        json.dumps({"template": template, "timeout": timeout}, sort_keys=True).encode()
    ).hexdigest()[:12]
    # Not in the hash: how long to wait for a pod is no part of what the pod runs.
    pending = _first(step.pending_timeout_seconds, task.pending_timeout_seconds, pending_default)
    names = tuple(r.name for r in task.results)
    resolved = ResolvedStep(
        step.name, template, timeout, retry, digest, pending_timeout_seconds=pending, results=names
    )
    return _with_matrix(resolved, step, declared, step_values)


def _with_matrix(
    resolved: ResolvedStep,
    step: PipelineTask,
    declared: list[tuple[str, str | None]],
    step_values: dict[str, str],
) -> ResolvedStep:
    """A matrixed step keeps what each combination's params need."""
    if step.matrix is None:
        return resolved
    return dataclasses.replace(
        resolved,
        matrix=step.matrix,
        params=tuple(declared),
        step_values=tuple(step_values.items()),
    )


def _values(
    step: PipelineTask,
    declared: list[tuple[str, str | None]],
    step_values: dict[str, str],
    pipeline_params: dict[str, str],
) -> dict[str, str]:
    """The params' values; a matrix param's stays ``$(params.NAME)``, which each
    combination's Job fills in (``_fill_combination``)."""
    fanned = {p.name for p in step.matrix.params} if step.matrix is not None else set()
    values = params.resolve(
        [d for d in declared if d[0] not in fanned], step_values, pipeline_params
    )
    values.update((n, f"$(params.{n})") for n in fanned)
    return values


def _first(*values: int | None) -> int | None:
    return next((v for v in values if v is not None), None)


def build_job(
    *,
    pipeline: str,
    namespace: str,
    pipeline_uid: str,
    step: ResolvedStep,
    run: int,
    attempt: int,
    retry_base: int,
    values: Mapping[Ref, str] | None = None,
    combination: Combo | None = None,
) -> dict[str, Any]:
    """The Job for one attempt; its name is the idempotency key of that attempt.

    ``values`` are those of the references its ``main`` container uses (results,
    ``$(tasks.status)``, ``$(tasks.STEP.status)``), substituted now: raises
    ``references.MissingValueError`` when one has none. ``combination``: the attempt is
    of that combination of a matrixed step (its index and its matrix params' values).
    """
    index = combination.index if combination is not None else None
    labels = naming.job_labels(pipeline, step.name, run, attempt, index)
    annotations = naming.job_annotations(pipeline, step.name, step.spec_hash)
    annotations[naming.ANNOTATION_RETRY_BASE] = str(retry_base)

    template = copy.deepcopy(step.pod_template)
    if combination is not None:
        _fill_combination(template, combination)
    _substitute_references(template, values or {})
    template["metadata"]["labels"] = {**(template["metadata"].get("labels") or {}), **labels}
    # The pipeline's exact name on the pod too: the pod view maps a pod to its pipeline.
    template["metadata"]["annotations"] = {
        **(template["metadata"].get("annotations") or {}),
        naming.ANNOTATION_PIPELINE: pipeline,
    }
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "podFailurePolicy": copy.deepcopy(_POD_FAILURE_POLICY),
        "template": template,
    }
    if step.timeout_seconds is not None:
        spec["activeDeadlineSeconds"] = step.timeout_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": naming.job_name(pipeline, step.name, run, attempt, index),
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": PIPELINE_KIND,
                    "name": pipeline,
                    "uid": pipeline_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
    }


@dataclass(frozen=True)
class Combo:
    """One combination of a matrixed step: its index and its matrix params' values;
    ``literal`` names those that came from a result (data: ``$`` escaped for the kubelet)."""

    index: int
    values: Mapping[str, str]
    literal: frozenset[str] = frozenset()


def _fill_combination(template: dict[str, Any], combo: Combo) -> None:
    """The matrix params' ``$(params.NAME)`` left in ``main`` by :func:`resolve_step`."""
    values = {
        n: references.kubelet_escape(v) if n in combo.literal else v
        for n, v in combo.values.items()
    }

    def fill(text: str) -> str:
        return params.PARAM_REF.sub(lambda m: values.get(m.group(1), m.group(0)), text)

    for container in template["spec"]["containers"]:
        if container.get("name") != CONTAINER_NAME:
            continue
        for key in ("command", "args"):
            if container.get(key) is not None:
                container[key] = [fill(v) for v in container[key]]
        for var in container.get("env") or ():
            if isinstance(var.get("value"), str):
                var["value"] = fill(var["value"])


def _substitute_references(template: dict[str, Any], values: Mapping[Ref, str]) -> None:
    """Replace the references in ``main``'s command, args and env values, in place (the
    kubelet's ``$`` escaping applied to the inserted values)."""
    for container in template["spec"]["containers"]:
        if container.get("name") != CONTAINER_NAME:
            continue
        for key in ("command", "args"):
            if container.get(key) is not None:
                container[key] = [
                    references.substitute(v, values, kubelet=True) for v in container[key]
                ]
        for var in container.get("env") or ():
            if isinstance(var.get("value"), str):
                var["value"] = references.substitute(var["value"], values, kubelet=True)
