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

Everything here is pure and total: any JSON value in, findings out; nothing
raises. Quoted user values are shortened so messages (and the status that
holds them) stay small whatever the input.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal

from pydantic import ValidationError

from sluice.api import (
    IMAGE_MESSAGE,
    IMAGE_PATTERN,
    PipelineSpec,
    PipelineTask,
    TaskSpec,
    parse_pipeline_spec,
    parse_task_spec,
)
from sluice.core import dag, naming, params

__all__ = [
    "MAX_LISTED",
    "MAX_OBJECT_BYTES",
    "STATUS_BYTES_PER_TASK",
    "Finding",
    "Report",
    "check_pipeline",
    "check_task",
    "invalid_message",
    "parse_quantity",
]

Severity = Literal["error", "warning"]

MAX_LISTED: Final = 10
"""Problems listed in one message; the rest are counted ("and 3 more")."""

MAX_OBJECT_BYTES: Final = 1_572_864
"""The largest object etcd stores by default (--max-request-bytes, 1.5 MiB)."""

STATUS_BYTES_PER_TASK: Final = 480
"""Generous size of one task's entry in ``status.tasks`` as JSON (long names, a failure
message): what a pipeline must leave room for besides its spec."""

_STATUS_BASE_BYTES: Final = 4096
"""The rest of the status (conditions with their messages, phase, times)."""

_MAX_WARNING: Final = 256
"""Characters of one admission warning the API server passes on for certain."""

_MAX_ARG_BYTES: Final = 131_072
"""Linux MAX_ARG_STRLEN: a single argument or NAME=value longer than this fails exec."""

_IMAGE = re.compile(IMAGE_PATTERN, re.ASCII)
_ENV_NAME = re.compile(r"[\x21-\x3c\x3e-\x7e]+")  # printable ASCII but '=' (Kubernetes >= 1.30)
_QUANTITY = re.compile(
    r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"([KMGTPE]i|[numkMGTPE]|[eE][+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))?",
    re.ASCII,
)
_SUFFIX: Final[dict[str, Decimal]] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    **{s: Decimal(1024**i) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"), 1)},
}
_PARAM_START = "$(params."
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_PLAIN = re.compile(r"[-\w.:/@ ]*", re.ASCII)  # needs no escaping in a JSON string
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]", re.ASCII)

_ENV_KEYS: Final = frozenset({"name", "value", "valueFrom"})
_ENV_SOURCES: Final = frozenset(
    {"configMapKeyRef", "secretKeyRef", "fieldRef", "resourceFieldRef", "fileKeyRef"}
)
_ENV_FROM_KEYS: Final = frozenset({"prefix", "configMapRef", "secretRef"})
_RESOURCES_KEYS: Final = frozenset({"limits", "requests", "claims"})
_TEMPLATE_META_KEYS: Final = frozenset({"labels", "annotations"})
_JOB_LABELS: Final = frozenset(
    {
        "controller-uid",
        "job-name",
        "batch.kubernetes.io/controller-uid",
        "batch.kubernetes.io/job-name",
    }
)
_SLUICE_LABELS: Final = frozenset(
    {
        naming.LABEL_PIPELINE,
        naming.LABEL_TASK,
        naming.LABEL_RUN,
        naming.LABEL_ATTEMPT,
        naming.LABEL_MANAGED_BY,
    }
)
_MAX_ANNOTATIONS_BYTES: Final = 262_144
# Fields of a core/v1 PodSpec (Kubernetes 1.34). An unknown one is only a warning: a newer
# cluster may know fields this list does not.
_POD_SPEC_FIELDS: Final = frozenset(
    {
        "activeDeadlineSeconds",
        "affinity",
        "automountServiceAccountToken",
        "containers",
        "dnsConfig",
        "dnsPolicy",
        "enableServiceLinks",
        "ephemeralContainers",
        "hostAliases",
        "hostIPC",
        "hostNetwork",
        "hostPID",
        "hostUsers",
        "hostname",
        "hostnameOverride",
        "imagePullSecrets",
        "initContainers",
        "nodeName",
        "nodeSelector",
        "os",
        "overhead",
        "preemptionPolicy",
        "priority",
        "priorityClassName",
        "readinessGates",
        "resourceClaims",
        "resources",
        "restartPolicy",
        "runtimeClassName",
        "schedulerName",
        "schedulingGates",
        "securityContext",
        "serviceAccount",
        "serviceAccountName",
        "setHostnameAsFQDN",
        "shareProcessNamespace",
        "subdomain",
        "terminationGracePeriodSeconds",
        "tolerations",
        "topologySpreadConstraints",
        "volumes",
    }
)


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Finding:
    """One problem, in a sentence fragment that names it."""

    severity: Severity
    message: str
    step: str | None = None
    """The pipeline step it concerns, when it only stops that step (the reconciler
    ignores it once the step has succeeded); None for the pipeline as a whole."""
    external: bool = False
    """It depends on a Task object, which may be applied or changed later."""


@dataclass
class Report:
    """The findings about one object, in a stable order (the spec's)."""

    kind: Literal["pipeline", "task"]
    findings: list[Finding] = field(default_factory=list)
    pipeline: PipelineSpec | None = None
    """The parsed Pipeline spec, when it parses."""
    task: TaskSpec | None = None
    """The parsed Task spec, when it parses (check_task only)."""
    tasks: dict[str, TaskSpec] = field(default_factory=dict)
    """Referenced Tasks that exist and are valid, parsed (check_pipeline only)."""

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def message(self, findings: Iterable[Finding] | None = None) -> str:
        """``Invalid pipeline: ...; ....`` over ``findings`` (default: every error)."""
        chosen = self.errors if findings is None else list(findings)
        return invalid_message(self.kind, [f.message for f in chosen])

    def refusal(self) -> str | None:
        """What the webhook answers: the message of the errors in the object itself."""
        own = [f for f in self.errors if not f.external]
        return self.message(own) if own else None

    def advice(self, limit: int = MAX_LISTED) -> list[str]:
        """What the webhook sends as warnings: external errors, then warnings.

        At most ``limit`` of at most 256 characters each: the API server may cut longer
        warnings and drops those past 4 KiB in all.
        """
        notes = [f.message for f in self.errors if f.external]
        notes += [f.message for f in self.warnings]
        if len(notes) > limit:
            notes = [*notes[: limit - 1], f"and {len(notes) - limit + 1} more warnings"]
        return [n if len(n) <= _MAX_WARNING else n[: _MAX_WARNING - 1] + "…" for n in notes]

    def _add(
        self,
        severity: Severity,
        message: str,
        step: str | None = None,
        external: bool = False,
    ) -> None:
        self.findings.append(Finding(severity, message, step, external))


def invalid_message(kind: str, problems: Sequence[str]) -> str:
    """``Invalid pipeline: p1; p2.``: at most MAX_LISTED problems, the rest counted."""
    shown = list(problems[:MAX_LISTED])
    if len(problems) > MAX_LISTED:
        shown.append(f"and {len(problems) - MAX_LISTED} more")
    return f"Invalid {kind}: " + "; ".join(shown) + "."


def _q(value: Any, limit: int = 60) -> str:
    """A user value, quoted and shortened for a message."""
    if isinstance(value, str) and len(value) <= limit and _PLAIN.fullmatch(value):
        return f'"{value}"'  # the common case, cheaply
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return json.dumps(text, ensure_ascii=False)


def _field(key: Any) -> str:
    """A user-supplied field name inside a path: as is when plain, else quoted
    (a key may hold a newline or be very long; a message stays one short line)."""
    text = str(key)
    return text if len(text) <= 60 and _PLAIN.fullmatch(text) else _q(text)


def _names(values: Iterable[str], limit: int = 8) -> str:
    items = [_q(v, 40) for v in values]
    if len(items) > limit:
        items = [*items[:limit], "..."]
    return ", ".join(items)


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.75)
    return f" (did you mean {_q(match[0])}?)" if match else ""


def _pydantic_problems(err: ValidationError, root: str, limit: int = 5) -> list[str]:
    out = []
    for e in err.errors()[:limit]:
        loc = root
        for part in e["loc"]:
            if isinstance(part, int):
                loc += f"[{part}]"
            elif _FIELD.fullmatch(part):
                loc += f".{part}"
            else:  # an unknown key: user input
                loc += f"[{_q(part, 30)}]"
        msg = str(e["msg"]).removeprefix("Value error, ")[:200]
        out.append(f"{loc}: {msg}")
    more = len(err.errors()) - limit
    if more > 0:
        out.append(f"{more} more schema errors")
    return out


# ----------------------------------------------------------------------------- quantities


def parse_quantity(value: Any) -> Decimal | None:
    """A Kubernetes resource quantity (``500m``, ``4Gi``, ``1e3``, ``2``) as a Decimal.

    None when it is not one; exact, so ``1Gi`` and ``1024Mi`` compare equal.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if value == value and abs(value) != float("inf") else None
    if not isinstance(value, str):
        return None
    m = _QUANTITY.fullmatch(value)
    if m is None:
        return None
    number, suffix = m.group(1), m.group(2) or ""
    try:
        if suffix[:1] in ("e", "E"):
            return Decimal(number) * Decimal(10) ** Decimal(suffix[1:])
        return Decimal(number) * _SUFFIX[suffix]
    except (InvalidOperation, ArithmeticError, KeyError):
        return None


# ----------------------------------------------------------------------------- tasks


def check_task(spec: Any, *, size: int | None = None) -> Report:
    """Check a Task object's ``spec``; ``size`` is the object's JSON size, if known."""
    report = Report("task")
    if not isinstance(spec, Mapping):
        report._add("error", "spec must be an object with an image")
        return report
    try:
        task = parse_task_spec(spec)
    except ValidationError as err:
        for problem in _pydantic_problems(err, "spec"):
            report._add("error", f"invalid spec: {problem}")
        return report
    report.task = task
    for severity, message in _task_problems(task):
        report._add(severity, message)
    if size is not None and size > MAX_OBJECT_BYTES:
        report._add(
            "error",
            f"the Task is {size // 1024} KiB, over the {MAX_OBJECT_BYTES // 1024} KiB the "
            "API server stores; move large values into ConfigMaps",
        )
    return report


def _task_problems(task: TaskSpec) -> Iterator[tuple[Severity, str]]:
    """Problems of a (parsed) task definition; the caller prefixes where it is."""
    if not _IMAGE.fullmatch(task.image):
        yield "error", f"image {_q(task.image)} {IMAGE_MESSAGE}"
    declared = [p.name for p in task.params]
    for name in _twice(declared):
        yield "error", f"parameter {_q(name)} is declared twice"
    yield from _param_references(task, set(declared))
    yield from _env_problems(task.env)
    yield from _env_from_problems(task.env_from)
    yield from _resources_problems(task.resources)
    yield from _pod_template_problems(task.pod_template)
    if task.retry is not None:
        b = task.retry.backoff
        if b.max_seconds < b.initial_seconds:
            yield (
                "warning",
                f"retry.backoff.maxSeconds ({b.max_seconds}) is less than initialSeconds "
                f"({b.initial_seconds}): every retry waits {b.max_seconds}s",
            )


def _texts(task: TaskSpec) -> Iterator[tuple[str, str]]:
    """(where, text) of everything $(params.X) is substituted into."""
    for i, text in enumerate(task.command or []):
        yield f"command[{i}]", text
    for i, text in enumerate(task.args or []):
        yield f"args[{i}]", text
    for i, var in enumerate(task.env or []):
        value = var.get("value") if isinstance(var, Mapping) else None
        if isinstance(value, str):
            yield f"env {_q(var.get('name', i))}", value


def _param_references(task: TaskSpec, declared: set[str]) -> Iterator[tuple[Severity, str]]:
    used: set[str] = set()
    for where, text in _texts(task):
        if _PARAM_START not in text:
            continue
        refs = params.referenced_params(text)
        used |= refs
        for name in sorted(refs - declared):
            yield (
                "error",
                f"{where} uses $(params.{name}), which the task does not declare"
                + (f" (it declares {_names(sorted(declared))})" if declared else "")
                + _did_you_mean(name, declared),
            )
        well_formed = sum(1 for _ in params.PARAM_REF.finditer(text))
        if text.count(_PARAM_START) > well_formed:
            yield (
                "warning",
                f"{where} has {_q(_PARAM_START)} that is not a parameter reference: a "
                "reference is $(params.NAME), NAME a letter or '_' then letters, digits, "
                "'_', '.' or '-'",
            )
    for name in declared - used:
        yield "warning", f"parameter {_q(name)} is declared but not used"


def _env_problems(env: list[dict[str, Any]] | None) -> Iterator[tuple[Severity, str]]:
    seen: set[str] = set()
    for i, var in enumerate(env or []):
        if not isinstance(var, Mapping):
            yield "error", f"env[{i}] must be an object with a name"
            continue
        name = var.get("name")
        if not isinstance(name, str) or not name:
            yield "error", f"env[{i}] has no name"
            continue
        where = f"env {_q(name)}"
        if not _ENV_NAME.fullmatch(name):
            yield (
                "error",
                f"{where}: a variable name is printable ASCII characters other than '='",
            )
        for key in sorted(set(var) - _ENV_KEYS):
            yield "error", f"{where}: unknown field {_q(key)}{_did_you_mean(key, _ENV_KEYS)}"
        value, source = var.get("value"), var.get("valueFrom")
        if value is not None and not isinstance(value, str):
            yield "error", f"{where}: the value must be a string (quote it: {_q(str(value))})"
        if value is not None and source is not None:
            yield "error", f"{where}: an env variable has a value or a valueFrom, not both"
        if source is not None:
            keys = set(source) if isinstance(source, Mapping) else set()
            if len(keys & _ENV_SOURCES) != 1 or keys - _ENV_SOURCES:
                yield (
                    "error",
                    f"{where}: valueFrom needs exactly one of {', '.join(sorted(_ENV_SOURCES))}",
                )
        if isinstance(value, str) and len(name) + len(value) + 1 > _MAX_ARG_BYTES:
            yield (
                "warning",
                f"{where} is {len(value) // 1024} KiB: Linux refuses to start a process "
                f"with a variable over {_MAX_ARG_BYTES // 1024} KiB",
            )
        if name in seen:
            yield "warning", f"{where} is set twice: the last one wins"
        seen.add(name)


def _env_from_problems(env_from: list[dict[str, Any]] | None) -> Iterator[tuple[Severity, str]]:
    for i, source in enumerate(env_from or []):
        where = f"envFrom[{i}]"
        if not isinstance(source, Mapping):
            yield "error", f"{where} must be an object"
            continue
        for key in sorted(set(source) - _ENV_FROM_KEYS):
            yield "error", f"{where}: unknown field {_q(key)}{_did_you_mean(key, _ENV_FROM_KEYS)}"
        refs = [k for k in ("configMapRef", "secretRef") if k in source]
        if len(refs) != 1:
            yield (
                "error",
                f"{where}: an envFrom source has exactly one of configMapRef and secretRef",
            )
        for key in refs:
            ref = source[key]
            if not isinstance(ref, Mapping) or not isinstance(ref.get("name"), str):
                yield "error", f"{where}.{_field(key)} needs a name"
        if "prefix" in source and not isinstance(source["prefix"], str):
            yield "error", f"{where}.prefix must be a string"


def _resources_problems(resources: dict[str, Any] | None) -> Iterator[tuple[Severity, str]]:
    if resources is None:
        return
    for key in sorted(set(resources) - _RESOURCES_KEYS):
        yield (
            "error",
            f"resources: unknown field {_q(key)}{_did_you_mean(key, _RESOURCES_KEYS)}",
        )
    amounts: dict[str, dict[str, Decimal]] = {"limits": {}, "requests": {}}
    for kind in ("limits", "requests"):
        section = resources.get(kind)
        if section is None:
            continue
        if not isinstance(section, Mapping):
            yield "error", f"resources.{kind} must map resource names to quantities"
            continue
        for name, raw in section.items():
            amount = parse_quantity(raw)
            if amount is None:
                yield (
                    "error",
                    f"resources.{kind}.{name}: {_q(raw)} is not a quantity "
                    "(e.g. 500m, 2, 4Gi, 1e3)",
                )
            elif amount < 0:
                yield "error", f"resources.{kind}.{name} must not be negative"
            else:
                amounts[kind][str(name)] = amount
    for name, request in amounts["requests"].items():
        limit = amounts["limits"].get(name)
        if limit is not None and request > limit:
            yield (
                "error",
                f"resources: requests.{name} ({resources['requests'][name]}) is more than "
                f"limits.{name} ({resources['limits'][name]})",
            )
    claims = resources.get("claims")
    if claims is not None and not (
        isinstance(claims, list)
        and all(isinstance(c, Mapping) and isinstance(c.get("name"), str) for c in claims)
    ):
        yield "error", "resources.claims must be a list of objects with a name"


def _is_qualified_name(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and not naming.is_dns_subdomain(prefix):
        return False
    return len(name) <= naming.MAX_NAME_LENGTH and _LABEL_NAME.fullmatch(name) is not None


def _pod_template_problems(template: dict[str, Any] | None) -> Iterator[tuple[Severity, str]]:
    if template is None:
        return
    for key in sorted(set(template) - {"metadata", "spec"}):
        yield (
            "error",
            f"podTemplate: unknown field {_q(key)} (a pod template has metadata and spec)"
            + _did_you_mean(key, ("metadata", "spec")),
        )
    meta = template.get("metadata")
    if meta is not None:
        if not isinstance(meta, Mapping):
            yield "error", "podTemplate.metadata must be an object"
        else:
            yield from _template_metadata_problems(meta)
    spec = template.get("spec")
    if spec is not None:
        if not isinstance(spec, Mapping):
            yield "error", "podTemplate.spec must be an object"
        else:
            yield from _pod_spec_problems(spec)


def _template_metadata_problems(meta: Mapping[str, Any]) -> Iterator[tuple[Severity, str]]:
    for key in sorted(set(meta) - _TEMPLATE_META_KEYS):
        yield (
            "warning",
            f"podTemplate.metadata.{_field(key)} has no effect: "
            "only labels and annotations are used",
        )
    labels = meta.get("labels")
    if labels is not None:
        if not isinstance(labels, Mapping):
            yield "error", "podTemplate.metadata.labels must map keys to strings"
        else:
            for key, value in labels.items():
                where = f"podTemplate.metadata.labels {_q(key)}"
                if not _is_qualified_name(str(key)):
                    yield (
                        "error",
                        f"{where}: a label key is [prefix/]name, the name at most 63 "
                        "characters of a-z, A-Z, 0-9, '-', '_', '.'",
                    )
                if not isinstance(value, str) or not naming.is_label_value(value):
                    yield (
                        "error",
                        f"{where}: {_q(value)} is not a label value (a string of at most 63 "
                        "characters of a-z, A-Z, 0-9, '-', '_', '.')",
                    )
                if key in _JOB_LABELS:
                    yield "error", f"{where} is set by the Job controller"
                elif key in _SLUICE_LABELS:
                    yield "warning", f"{where} is replaced by Sluice's own"
    annotations = meta.get("annotations")
    if annotations is not None:
        if not isinstance(annotations, Mapping):
            yield "error", "podTemplate.metadata.annotations must map keys to strings"
        else:
            total = 0
            for key, value in annotations.items():
                where = f"podTemplate.metadata.annotations {_q(key)}"
                if not _is_qualified_name(str(key)):
                    yield "error", f"{where}: an annotation key is [prefix/]name like a label key"
                if not isinstance(value, str):
                    yield "error", f"{where}: the value must be a string (quote it)"
                total += len(str(key)) + len(str(value))
            if total > _MAX_ANNOTATIONS_BYTES:
                yield "error", "podTemplate.metadata.annotations exceed 256 KiB"


def _pod_spec_problems(spec: Mapping[str, Any]) -> Iterator[tuple[Severity, str]]:
    for key in sorted(set(spec) - _POD_SPEC_FIELDS):
        yield (
            "warning",
            f"podTemplate.spec.{_field(key)} is not a pod spec field and will be dropped"
            + _did_you_mean(key, _POD_SPEC_FIELDS),
        )
    restart = spec.get("restartPolicy")
    if restart is not None and restart != "Never":
        yield (
            "warning",
            f"podTemplate.spec.restartPolicy {_q(restart)} is replaced by Never: Sluice, "
            "not the kubelet, retries failed attempts",
        )
    for key in ("containers", "initContainers"):
        items = spec.get(key)
        if items is None:
            continue
        if not isinstance(items, list) or not all(
            isinstance(c, Mapping) and isinstance(c.get("name"), str) and c.get("name")
            for c in items
        ):
            yield "error", f"podTemplate.spec.{_field(key)} must be a list of containers with names"
        elif key == "containers":
            for c in items:
                if c["name"] != "main" and not isinstance(c.get("image"), str):
                    yield "error", f"podTemplate.spec.containers {_q(c['name'])} needs an image"
    selector = spec.get("nodeSelector")
    if selector is not None and not (
        isinstance(selector, Mapping) and all(isinstance(v, str) for v in selector.values())
    ):
        yield "error", "podTemplate.spec.nodeSelector must map label keys to strings"
    tolerations = spec.get("tolerations")
    if tolerations is not None and not (
        isinstance(tolerations, list) and all(isinstance(t, Mapping) for t in tolerations)
    ):
        yield "error", "podTemplate.spec.tolerations must be a list of objects"
    volumes = spec.get("volumes")
    if volumes is not None:
        if not isinstance(volumes, list) or not all(
            isinstance(v, Mapping) and isinstance(v.get("name"), str) for v in volumes
        ):
            yield "error", "podTemplate.spec.volumes must be a list of volumes with names"
        else:
            names = [v["name"] for v in volumes]
            for name in sorted({n for n in names if names.count(n) > 1}):
                yield "error", f"podTemplate.spec.volumes: {_q(name)} is declared twice"
    account = spec.get("serviceAccountName")
    if account is not None and not (isinstance(account, str) and naming.is_dns_subdomain(account)):
        yield "error", f"podTemplate.spec.serviceAccountName {_q(account)} is not a valid name"


# ----------------------------------------------------------------------------- pipelines


def check_pipeline(
    spec: Any,
    *,
    name: str | None = None,
    tasks: Mapping[str, Mapping[str, Any]] | None = None,
    size: int | None = None,
) -> Report:
    """Check a Pipeline's ``spec``.

    ``name`` is the Pipeline's name (for the Job names), ``tasks`` the Task
    objects of its namespace by name (``{"spec": ...}`` dicts; None when they
    are not known, which skips the checks that need them), ``size`` the
    object's JSON size when known.
    """
    report = Report("pipeline")
    if not isinstance(spec, Mapping):
        report._add("error", "invalid spec: spec must be an object with a list of tasks")
        return report
    try:
        pipeline = parse_pipeline_spec(spec)
    except ValidationError as err:
        for problem in _pydantic_problems(err, "spec"):
            report._add("error", f"invalid spec: {problem}")
        return report
    report.pipeline = pipeline
    _check_graph(report, pipeline)
    if name is not None:
        _check_job_names(report, pipeline, name)
    _check_steps(report, pipeline, tasks)
    if size is not None:
        _check_size(report, pipeline, size)
    return report


def _check_graph(report: Report, spec: PipelineSpec) -> None:
    names = [t.name for t in spec.tasks]
    seen: set[str] = set()
    for n in names:
        if n in seen:
            report._add("error", f"task name {_q(n)} is used twice")
        seen.add(n)
    known = set(names)
    deps: dict[str, list[str]] = {}
    for step in spec.tasks:
        listed: set[str] = set()
        for dep in step.depends_on:
            if dep == step.name:
                report._add("error", f"task {_q(step.name)}: a task cannot depend on itself")
            elif dep in listed:
                report._add("error", f"task {_q(step.name)} lists {_q(dep)} twice in dependsOn")
            elif dep not in known:
                report._add(
                    "error",
                    f"task {_q(step.name)} depends on unknown task {_q(dep)}"
                    + _did_you_mean(dep, known - {step.name}),
                )
            listed.add(dep)
        deps.setdefault(step.name, []).extend(d for d in step.depends_on if d != step.name)
    cycle = dag.find_cycle(deps)
    if cycle is not None:
        report._add("error", f"cycle: {dag.format_cycle(cycle)}")


def _check_job_names(report: Report, spec: PipelineSpec, pipeline: str) -> None:
    # naming.job_name shortens long names with a hash, so only names Kubernetes would not
    # accept can fail; the longest step is the one to try.
    longest = max((t.name for t in spec.tasks), key=len)
    try:
        naming.job_name(pipeline, longest, 1, 1)
    except ValueError as err:
        report._add(
            "error",
            f"pipeline {_q(pipeline)} and task {_q(longest)} cannot form a valid Job name ({err})",
        )


def _twice(names: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    twice: list[str] = []
    for n in names:
        if n in seen and n not in twice:
            twice.append(n)
        seen.add(n)
    return twice


def _check_steps(
    report: Report, spec: PipelineSpec, tasks: Mapping[str, Mapping[str, Any]] | None
) -> None:
    for name in _twice(p.name for p in spec.params):
        report._add("error", f"pipeline parameter {_q(name)} is declared twice")
    pipeline_params = {p.name: p.value for p in spec.params}
    checked: dict[str, Report] = {}
    used_params: set[str] = set()
    all_known = True
    max_timeout = spec.timeout_seconds
    for step in spec.tasks:
        where = f"task {_q(step.name)}"
        for dup in _twice(p.name for p in step.params):
            report._add("error", f"{where} sets parameter {_q(dup)} twice", step=step.name)
        # Step values may refer to pipeline params; nothing else is substituted into them.
        for p in step.params:
            refs = params.referenced_params(p.value)
            used_params |= refs
            for ref in sorted(refs - pipeline_params.keys()):
                report._add(
                    "error",
                    f"{where}: parameter {_q(p.name)} uses $(params.{ref}), which the pipeline "
                    "does not declare" + _did_you_mean(ref, pipeline_params),
                    step=step.name,
                )
        if max_timeout and step.timeout_seconds and step.timeout_seconds > max_timeout:
            report._add(
                "warning",
                f"{where}: timeoutSeconds ({step.timeout_seconds}) is longer than the "
                f"pipeline's ({max_timeout})",
                step=step.name,
            )
        if step.task is not None:
            for severity, message in _task_problems(step.task):
                report._add(severity, f"{where}: {message}", step=step.name)
            _check_values(report, step, step.task, pipeline_params, external=False)
            used_params |= {p.name for p in step.task.params}
            continue
        assert step.task_ref is not None
        if tasks is None:
            all_known = False
            continue
        ref = step.task_ref.name
        obj = tasks.get(ref)
        if obj is None:
            all_known = False
            report._add(
                "error",
                f"{where} refers to Task {_q(ref)}, which does not exist"
                + _did_you_mean(ref, tasks),
                step=step.name,
                external=True,
            )
            continue
        if ref not in checked:
            checked[ref] = check_task(obj.get("spec") if isinstance(obj, Mapping) else None)
        task_report = checked[ref]
        if task_report.errors or task_report.task is None:
            all_known = False
            report._add(
                "error",
                f"{where} uses Task {_q(ref)}, which is invalid: "
                + "; ".join(f.message for f in task_report.errors[:3]),
                step=step.name,
                external=True,
            )
            continue
        report.tasks[ref] = task_report.task
        _check_values(report, step, task_report.task, pipeline_params, external=True)
        used_params |= {p.name for p in task_report.task.params}
    if all_known:
        for name in pipeline_params.keys() - used_params:
            report._add(
                "warning",
                f"pipeline parameter {_q(name)} is not used: no task declares it",
            )


def _check_values(
    report: Report,
    step: PipelineTask,
    task: TaskSpec,
    pipeline_params: Mapping[str, str],
    *,
    external: bool,
) -> None:
    """Does every parameter the task declares get a value, and are the step's values used?"""
    declared = [(p.name, p.default) for p in task.params]
    values = {p.name: p.value for p in step.params}
    where = f"task {_q(step.name)}"
    # As params.resolve sees it (step values referring to undeclared pipeline params
    # have their own message, from the caller).
    missing = [
        n
        for n, default in declared
        if n not in values and n not in pipeline_params and default is None
    ]
    if missing:
        err = params.MissingParamError(missing)
        report._add("error", f"{where}: {err}", step=step.name, external=external)
    for extra in params.undeclared((n for n, _ in declared), values):
        report._add(
            "warning",
            f"{where} sets parameter {_q(extra)}, which its task does not declare: it is "
            "ignored" + _did_you_mean(extra, (n for n, _ in declared)),
            step=step.name,
            external=external,
        )


def _check_size(report: Report, spec: PipelineSpec, size: int) -> None:
    status = _STATUS_BASE_BYTES + STATUS_BYTES_PER_TASK * len(spec.tasks)
    if size + status > MAX_OBJECT_BYTES:
        report._add(
            "error",
            f"the pipeline is too big: {size // 1024} KiB, plus about {status // 1024} KiB of "
            f"status for its {len(spec.tasks)} tasks, is over the {MAX_OBJECT_BYTES // 1024} "
            "KiB the API server stores; move large values into ConfigMaps or Tasks, or split "
            "the pipeline",
        )
