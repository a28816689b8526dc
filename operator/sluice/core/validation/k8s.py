"""Checks of the core/v1 shapes a Task carries: env, envFrom, resources, the pod template.

The field names come from the pinned Kubernetes' own OpenAPI (``sluice.k8s.openapi``), so
they follow the version the project is built and tested against; the pod template's spec
is walked against upstream's PodSpec, every nested object included, and an unknown field
is named with its path and the closest known field.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any, Final

from sluice.core import naming
from sluice.core.validation.report import Severity, did_you_mean, field_name, quote
from sluice.k8s import openapi
from sluice.k8s.syntax import (
    is_dns_subdomain,
    is_env_name,
    is_label_value,
    is_qualified_name,
    parse_quantity,
)

__all__ = [
    "env_from_problems",
    "env_problems",
    "pod_template_problems",
    "resources_problems",
    "unknown_fields",
]

_MAX_ARG_BYTES: Final = 131_072
"""Linux MAX_ARG_STRLEN: a single argument or NAME=value longer than this fails exec."""

_ENV_KEYS: Final = openapi.fields(openapi.ENV_VAR)
_ENV_SOURCES: Final = openapi.fields(openapi.ENV_VAR_SOURCE)
_ENV_FROM_KEYS: Final = openapi.fields(openapi.ENV_FROM_SOURCE)
_RESOURCES_KEYS: Final = openapi.fields(openapi.RESOURCE_REQUIREMENTS)
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
_MAX_UNKNOWN: Final = 10
"""Unknown fields reported per pod template (the rest would only repeat the point)."""


def env_problems(env: list[dict[str, Any]] | None) -> Iterator[tuple[Severity, str]]:
    seen: set[str] = set()
    for i, var in enumerate(env or []):
        if not isinstance(var, Mapping):
            yield "error", f"env[{i}] must be an object with a name"
            continue
        name = var.get("name")
        if not isinstance(name, str) or not name:
            yield "error", f"env[{i}] has no name"
            continue
        where = f"env {quote(name)}"
        if not is_env_name(name):
            yield (
                "error",
                f"{where}: a variable name is printable ASCII characters other than '='",
            )
        for key in sorted(set(var) - _ENV_KEYS):
            yield "error", f"{where}: unknown field {quote(key)}{did_you_mean(key, _ENV_KEYS)}"
        value, source = var.get("value"), var.get("valueFrom")
        if value is not None and not isinstance(value, str):
            yield "error", f"{where}: the value must be a string (quote it: {quote(str(value))})"
        if value is not None and source is not None:
            yield "error", f"{where}: an env variable has a value or a valueFrom, not both"
        if source is not None:
            yield from _value_from_problems(where, source)
        if isinstance(value, str) and len(name) + len(value) + 1 > _MAX_ARG_BYTES:
            yield (
                "warning",
                f"{where} is {len(value) // 1024} KiB: Linux refuses to start a process "
                f"with a variable over {_MAX_ARG_BYTES // 1024} KiB",
            )
        if name in seen:
            yield "warning", f"{where} is set twice: the last one wins"
        seen.add(name)


def _value_from_problems(where: str, source: Any) -> Iterator[tuple[Severity, str]]:
    keys = set(source) if isinstance(source, Mapping) else set()
    if len(keys & _ENV_SOURCES) != 1 or keys - _ENV_SOURCES:
        yield (
            "error",
            f"{where}: valueFrom needs exactly one of {', '.join(sorted(_ENV_SOURCES))}",
        )
        return
    (key,) = keys
    schema = openapi.definition(openapi.ENV_VAR_SOURCE)["properties"][key]
    for problem in unknown_fields(source[key], schema, f"{where}.valueFrom.{key}"):
        yield "error", problem


def env_from_problems(env_from: list[dict[str, Any]] | None) -> Iterator[tuple[Severity, str]]:
    for i, source in enumerate(env_from or []):
        where = f"envFrom[{i}]"
        if not isinstance(source, Mapping):
            yield "error", f"{where} must be an object"
            continue
        for key in sorted(set(source) - _ENV_FROM_KEYS):
            yield "error", f"{where}: unknown field {quote(key)}{did_you_mean(key, _ENV_FROM_KEYS)}"
        refs = [k for k in ("configMapRef", "secretRef") if k in source]
        if len(refs) != 1:
            yield (
                "error",
                f"{where}: an envFrom source has exactly one of configMapRef and secretRef",
            )
        for key in refs:
            ref = source[key]
            if not isinstance(ref, Mapping) or not isinstance(ref.get("name"), str):
                yield "error", f"{where}.{field_name(key)} needs a name"
        if "prefix" in source and not isinstance(source["prefix"], str):
            yield "error", f"{where}.prefix must be a string"


def resources_problems(resources: dict[str, Any] | None) -> Iterator[tuple[Severity, str]]:
    if resources is None:
        return
    for key in sorted(set(resources) - _RESOURCES_KEYS):
        yield (
            "error",
            f"resources: unknown field {quote(key)}{did_you_mean(key, _RESOURCES_KEYS)}",
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
                    f"resources.{kind}.{name}: {quote(raw)} is not a quantity "
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


def pod_template_problems(template: dict[str, Any] | None) -> Iterator[tuple[Severity, str]]:
    if template is None:
        return
    for key in sorted(set(template) - {"metadata", "spec"}):
        yield (
            "error",
            f"podTemplate: unknown field {quote(key)} (a pod template has metadata and spec)"
            + did_you_mean(key, ("metadata", "spec")),
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
            f"podTemplate.metadata.{field_name(key)} has no effect: "
            "only labels and annotations are used",
        )
    labels = meta.get("labels")
    if labels is not None:
        if not isinstance(labels, Mapping):
            yield "error", "podTemplate.metadata.labels must map keys to strings"
        else:
            for key, value in labels.items():
                where = f"podTemplate.metadata.labels {quote(key)}"
                if not is_qualified_name(str(key)):
                    yield (
                        "error",
                        f"{where}: a label key is [prefix/]name, the name at most 63 "
                        "characters of a-z, A-Z, 0-9, '-', '_', '.'",
                    )
                if not isinstance(value, str) or not is_label_value(value):
                    yield (
                        "error",
                        f"{where}: {quote(value)} is not a label value (a string of at most 63 "
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
                where = f"podTemplate.metadata.annotations {quote(key)}"
                if not is_qualified_name(str(key)):
                    yield "error", f"{where}: an annotation key is [prefix/]name like a label key"
                if not isinstance(value, str):
                    yield "error", f"{where}: the value must be a string (quote it)"
                total += len(str(key)) + len(str(value))
            if total > _MAX_ANNOTATIONS_BYTES:
                yield "error", "podTemplate.metadata.annotations exceed 256 KiB"


def _pod_spec_problems(spec: Mapping[str, Any]) -> Iterator[tuple[Severity, str]]:
    for problem in unknown_fields(spec, openapi.definition(openapi.POD_SPEC), "podTemplate.spec"):
        yield "error", problem
    for check in _POD_SPEC_CHECKS:
        yield from check(spec)


def _restart_policy(spec: Mapping[str, Any]) -> Iterator[tuple[Severity, str]]:
    restart = spec.get("restartPolicy")
    if restart is not None and restart != "Never":
        yield (
            "warning",
            f"podTemplate.spec.restartPolicy {quote(restart)} is replaced by Never: Sluice, "
            "not the kubelet, retries failed attempts",
        )


def _is_named(item: Any) -> bool:
    return isinstance(item, Mapping) and isinstance(item.get("name"), str) and bool(item["name"])


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[Severity, str]]:
    for key in ("containers", "initContainers"):
        items = spec.get(key)
        if items is None:
            continue
        if not isinstance(items, list) or not all(_is_named(c) for c in items):
            where = f"podTemplate.spec.{field_name(key)}"
            yield "error", f"{where} must be a list of containers with names"
        elif key == "containers":
            for c in items:
                if c["name"] != "main" and not isinstance(c.get("image"), str):
                    yield "error", f"podTemplate.spec.containers {quote(c['name'])} needs an image"


def _node_selector(spec: Mapping[str, Any]) -> Iterator[tuple[Severity, str]]:
    selector = spec.get("nodeSelector")
    if selector is not None and not (
        isinstance(selector, Mapping) and all(isinstance(v, str) for v in selector.values())
    ):
        yield "error", "podTemplate.spec.nodeSelector must map label keys to strings"


def _tolerations(spec: Mapping[str, Any]) -> Iterator[tuple[Severity, str]]:
    tolerations = spec.get("tolerations")
    if tolerations is not None and not (
        isinstance(tolerations, list) and all(isinstance(t, Mapping) for t in tolerations)
    ):
        yield "error", "podTemplate.spec.tolerations must be a list of objects"


def _volumes(spec: Mapping[str, Any]) -> Iterator[tuple[Severity, str]]:
    volumes = spec.get("volumes")
    if volumes is None:
        return
    if not isinstance(volumes, list) or not all(
        isinstance(v, Mapping) and isinstance(v.get("name"), str) for v in volumes
    ):
        yield "error", "podTemplate.spec.volumes must be a list of volumes with names"
        return
    names = [v["name"] for v in volumes]
    for name in sorted({n for n in names if names.count(n) > 1}):
        yield "error", f"podTemplate.spec.volumes: {quote(name)} is declared twice"


def _service_account(spec: Mapping[str, Any]) -> Iterator[tuple[Severity, str]]:
    account = spec.get("serviceAccountName")
    if account is not None and not (isinstance(account, str) and is_dns_subdomain(account)):
        yield "error", f"podTemplate.spec.serviceAccountName {quote(account)} is not a valid name"


_POD_SPEC_CHECKS: Final = (
    _restart_policy,
    _containers,
    _node_selector,
    _tolerations,
    _volumes,
    _service_account,
)


def unknown_fields(value: Any, schema: Mapping[str, Any], path: str) -> list[str]:
    """Fields of ``value`` that ``schema`` (an upstream definition) does not know, at any
    depth: ``path: unknown field "x" (did you mean "y"?)``, at most a few of them.

    Only names are checked here; a value of the wrong type is skipped (the checks above
    and, at Job creation, the API server name those). Total on any JSON value.
    """
    found: list[str] = []
    # An explicit stack, depth first in document order; the depth is the schema's (about
    # 10), never the input's. A path is (parent path, key or index), spelled out only for
    # an unknown field: most pod templates have none.
    stack: list[tuple[Any, Mapping[str, Any], _Path]] = [(value, schema, None)]
    while stack and len(found) < _MAX_UNKNOWN:
        value, node, at = stack.pop()
        if "$ref" in node:
            node = openapi.definition(node["$ref"])
        if isinstance(value, list):
            items = node.get("items")
            if items is not None:
                stack += [(v, items, (at, i)) for i, v in reversed(list(enumerate(value)))]
        elif isinstance(value, Mapping):
            known = node.get("properties")
            if known is not None:
                children = []
                for key, child in value.items():
                    if key in known:
                        children.append((child, known[key], (at, key)))
                    else:
                        where = _spell(path, at)
                        found.append(
                            f"{where}: unknown field {quote(key)}" + did_you_mean(str(key), known)
                        )
                stack += reversed(children)
            elif isinstance(node.get("additionalProperties"), Mapping):
                extra = node["additionalProperties"]
                stack += [(v, extra, (at, k)) for k, v in reversed(list(value.items()))]
    return found[:_MAX_UNKNOWN]


_Path = tuple["_Path", str | int] | None


def _spell(root: str, at: _Path) -> str:
    """``root.a.b[0].c`` from the linked path ``at``."""
    parts: list[str] = []
    while at is not None:
        at, part = at
        parts.append(f"[{part}]" if isinstance(part, int) else f".{field_name(part)}")
    return root + "".join(reversed(parts))
