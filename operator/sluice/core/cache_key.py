"""Step caching: the cache key of a resolved step, and the policy of cache entries.

The key (algorithm version 1) is ``"v1-" + sha256`` (hex) of the canonical JSON (keys
sorted, no spaces, UTF-8) of exactly these inputs of the step, after ``$(params.x)`` and
``$(tasks.s.results.r)`` substitution:

``image``
    as written (a tag is not resolved to a digest: pin a digest to key on content);
``command``, ``args``, ``workingDir``
    the lists and the string, null when unset (unset and ``[]`` differ: the image's own);
``env``
    every variable's name with its ``value``, or its ``valueFrom`` reference as written (a
    Secret's or ConfigMap's *content* is not read: bump ``cacheVersion`` when it matters);
``envFrom``
    the sources as written (the same caveat);
``params``
    the values of the parameters the Task declares, by name, after defaults;
``upstream``
    the results the step consumes, by step and result name;
``results``
    the names of the results the Task declares (what dependents can read);
``accelerators``
    the extended resources in ``resources.limits`` and ``requests``: every name that is not
    ``cpu``, ``memory``, ``ephemeral-storage`` or ``hugepages-*`` (e.g. ``nvidia.com/gpu``),
    with its quantity normalised (``1`` and ``1000m`` are equal). CPU and memory are left
    out: they change how fast a step runs, not what it computes;
``cacheVersion``
    the Task's own string, null when unset.

Everything else is not in the key: retry, timeouts, ``serviceAccountName``, ``podTemplate``
(labels, node selectors, tolerations, volumes), CPU and memory, the step's name and the
pipeline's. A volume's content is not an input Sluice can see: bump ``cacheVersion``.

:func:`inputs` gives, once per spec, what the spec fixes of each cached step's key (the
reconciler adds the consumed results: ``sluice.core.caching``).

Entries (:class:`CacheEntry`): one per (step, key) with the run it came from, its finish
time and its results. :func:`lookup` takes the newest entry of the key no older than
``maxAgeSeconds``; :func:`remember` keeps entries newest first, drops those older than
:data:`MAX_ENTRY_AGE_SECONDS` and keeps at most ``cap`` (:data:`CACHE_CAP_PER_PIPELINE`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from sluice.api import PipelineSpec, TaskSpec
from sluice.api.schedule import CACHE_CAP_PER_PIPELINE, CachePolicy
from sluice.core import params
from sluice.k8s.syntax import parse_quantity

__all__ = [
    "CACHE_CAP_PER_PIPELINE",
    "KEY_VERSION",
    "MAX_ENTRY_AGE_SECONDS",
    "NOCACHE_PREFIX",
    "CacheEntry",
    "CacheInputs",
    "cache_key",
    "effective_cache",
    "ignores_cache",
    "inputs",
    "key_inputs",
    "lookup",
    "remember",
]

KEY_VERSION: Final = "v1"
NOCACHE_PREFIX: Final = "nocache-"
"""A ``sluice.dev/rerun`` value with this prefix reruns without reading the cache."""
MAX_ENTRY_AGE_SECONDS: Final = 30 * 24 * 3600
"""Entries of a policy without ``maxAgeSeconds`` are kept this long at most."""
_NOT_ACCELERATORS: Final = frozenset({"cpu", "memory", "ephemeral-storage"})


def key_inputs(
    task: TaskSpec,
    params: Mapping[str, str],
    upstream: Mapping[str, Mapping[str, str]],
) -> dict[str, Any]:
    """The inputs the key is a hash of (see the module's docstring), as one JSON value.

    ``task`` is the step's TaskSpec after substitution, ``params`` its resolved parameter
    values, ``upstream`` the results it consumes (``{step: {result: value}}``).
    """
    declared = {p.name for p in task.params}
    return {
        "key": KEY_VERSION,
        "image": task.image,
        "command": task.command,
        "args": task.args,
        "workingDir": task.working_dir,
        "env": [
            {"name": e.get("name"), "value": e.get("value"), "valueFrom": e.get("valueFrom")}
            for e in task.env or ()
        ],
        "envFrom": list(task.env_from or ()),
        "params": {k: v for k, v in params.items() if k in declared},
        "upstream": {s: dict(r) for s, r in upstream.items()},
        "results": sorted(r.name for r in task.results),
        "accelerators": _accelerators(task.resources),
        "cacheVersion": task.cache_version,
    }


def cache_key(
    task: TaskSpec,
    params: Mapping[str, str],
    upstream: Mapping[str, Mapping[str, str]],
) -> str:
    """The step's cache key: ``v1-`` and 64 hex digits, stable across processes and versions."""
    canonical = json.dumps(
        key_inputs(task, params, upstream),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return f"{KEY_VERSION}-{hashlib.sha256(canonical.encode()).hexdigest()}"


def _accelerators(resources: Mapping[str, Any] | None) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for kind in ("limits", "requests"):
        for name, value in ((resources or {}).get(kind) or {}).items():
            if name in _NOT_ACCELERATORS or str(name).startswith("hugepages-"):
                continue
            out.setdefault(kind, {})[str(name)] = _quantity(value)
    return out


def _quantity(value: Any) -> str:
    parsed = parse_quantity(value)
    if parsed is None:
        return str(value)
    return format(parsed.normalize() if parsed != 0 else Decimal(0), "f")


def effective_cache(step: CachePolicy | None, pipeline: CachePolicy | None) -> CachePolicy | None:
    """The policy of a step: its own when set (even disabled), else the pipeline's."""
    policy = step if step is not None else pipeline
    return policy if policy is not None and policy.enabled else None


def ignores_cache(rerun: str | None) -> bool:
    """Whether a ``sluice.dev/rerun`` value asks for a run without the cache."""
    return bool(rerun) and str(rerun).startswith(NOCACHE_PREFIX)


@dataclass(frozen=True)
class CacheEntry:
    """A succeeded attempt other runs may reuse."""

    step: str
    key: str
    run: int
    finished_at: datetime
    results: Mapping[str, str] = field(default_factory=dict)


def lookup(
    entries: Sequence[CacheEntry], key: str, *, now: datetime, max_age_seconds: int | None
) -> CacheEntry | None:
    """The newest entry of ``key`` within ``maxAgeSeconds`` (and the global bound), or None."""
    age = min(max_age_seconds or MAX_ENTRY_AGE_SECONDS, MAX_ENTRY_AGE_SECONDS)
    oldest = now - timedelta(seconds=age)
    fresh = [e for e in entries if e.key == key and oldest <= e.finished_at <= now]
    return max(fresh, key=lambda e: (e.finished_at, e.run), default=None)


def remember(
    entries: Sequence[CacheEntry],
    entry: CacheEntry,
    *,
    now: datetime,
    cap: int = CACHE_CAP_PER_PIPELINE,
) -> list[CacheEntry]:
    """The entries with ``entry`` added: one per (step, key), newest first, bounded."""
    oldest = now - timedelta(seconds=MAX_ENTRY_AGE_SECONDS)
    kept = [
        e for e in entries if (e.step, e.key) != (entry.step, entry.key) and e.finished_at >= oldest
    ]
    kept.append(entry)
    kept.sort(key=lambda e: (e.finished_at, e.run), reverse=True)
    return kept[: max(cap, 0)]


@dataclass(frozen=True)
class CacheInputs:
    """What the spec fixes of a cached step's key, and its policy."""

    policy: CachePolicy
    task: TaskSpec
    """The step's Task, ``$(params.x)`` substituted in command, args and env values."""
    params: Mapping[str, str]


def inputs(spec: PipelineSpec, tasks: Mapping[str, TaskSpec]) -> dict[str, CacheInputs]:
    """The cached steps of ``spec`` (see the module's docstring); ``tasks`` by name."""
    out: dict[str, CacheInputs] = {}
    pipeline_params = {p.name: p.value for p in spec.params}
    for step in spec.tasks:
        policy = effective_cache(step.cache, spec.cache)
        task = step.task or (tasks.get(step.task_ref.name) if step.task_ref else None)
        if policy is None or task is None or step.matrix is not None:
            continue
        declared = [(p.name, p.default) for p in task.params]
        try:
            values = params.resolve(
                declared, {p.name: p.value for p in step.params}, pipeline_params
            )
            out[step.name] = CacheInputs(policy, _substituted(task, values), values)
        except params.MissingParamError:
            continue  # the step fails on its own (validation says why)
    return out


def _substituted(task: TaskSpec, values: Mapping[str, str]) -> TaskSpec:
    def each(texts: list[str] | None) -> list[str] | None:
        return None if texts is None else [params.substitute(t, values) for t in texts]

    env = None
    if task.env is not None:
        env = [
            {**e, "value": params.substitute(e["value"], values)}
            if isinstance(e.get("value"), str)
            else dict(e)
            for e in task.env
        ]
    return task.model_copy(
        update={"command": each(task.command), "args": each(task.args), "env": env}
    )
