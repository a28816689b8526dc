"""Results: small strings a step hands to later steps.

The channel is the Kubernetes termination message: the step's ``main`` container writes one
JSON object of string values, e.g. ``{"model-uri": "s3://acme/m/42", "auc": "0.91"}``, to
``/dev/termination-log`` (exported to it as ``$SLUICE_RESULTS_PATH``); when the attempt
succeeds the operator reads it from the pod's container status and :func:`parse` checks it
against what the task declares. No sidecar, no wrapper, no object store.

Bounds, all of them stated in messages
    * at most :data:`MAX_RESULTS` results per task, names DNS labels (:func:`check_names`);
    * the kubelet keeps at most :data:`MESSAGE_BYTES` of a container's termination message
      (less when the pod has more than 3 containers: 12 KiB shared, :func:`message_limit`);
    * the results kept in a Pipeline's status total at most :data:`STATUS_BUDGET_BYTES`
      (:func:`admit`), so the object stays far below the API server's 1.5 MiB: 256 KiB of
      results, plus a 1000-step spec and its status, still fit. A producer whose results
      would exceed what is left fails with a message that names the bound and says to pass
      large data by reference.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "INVALID_RESULTS",
    "MAX_NAME_LENGTH",
    "MAX_RESULTS",
    "MESSAGE_BYTES",
    "NAME_PATTERN",
    "RESULTS_PATH_ENV",
    "RESULTS_TOO_LARGE",
    "STATUS_BUDGET_BYTES",
    "TERMINATION_MESSAGE_PATH",
    "InvalidResults",
    "admit",
    "check_names",
    "message_limit",
    "parse",
    "reserved_bytes",
    "status_bytes",
]

NAME_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""A result name: a DNS label, like step names (they appear in ``$(tasks.S.results.NAME)``)."""
_NAME = re.compile(NAME_PATTERN, re.ASCII)
MAX_NAME_LENGTH: Final = 63

MAX_RESULTS: Final = 16
"""Results one task may declare."""

MESSAGE_BYTES: Final = 4096
"""What the kubelet keeps of one container's termination message."""
_POD_MESSAGE_BYTES: Final = 12 * 1024
"""...and of all a pod's containers together, shared equally."""

TERMINATION_MESSAGE_PATH: Final = "/dev/termination-log"
"""Where the ``main`` container writes its results (the Kubernetes default; Sluice sets
``terminationMessagePath`` to it explicitly)."""
RESULTS_PATH_ENV: Final = "SLUICE_RESULTS_PATH"
"""The variable that tells the container :data:`TERMINATION_MESSAGE_PATH`."""

STATUS_BUDGET_BYTES: Final = 256 * 1024
"""All results kept in one Pipeline's status (as JSON), pipeline results included."""

INVALID_RESULTS: Final = "InvalidResults"
"""The reason of an attempt whose results do not match the declaration (retried)."""
RESULTS_TOO_LARGE: Final = "ResultsTooLarge"
"""The reason of a step whose results would overflow :data:`STATUS_BUDGET_BYTES`."""

_MAX_LISTED: Final = 8
_MAX_QUOTED: Final = 60


def _q(value: str) -> str:
    text = value if len(value) <= _MAX_QUOTED else value[: _MAX_QUOTED - 1] + "…"
    return json.dumps(text, ensure_ascii=False)


def _names(names: Iterable[str]) -> str:
    items = [_q(n) for n in names]
    if len(items) > _MAX_LISTED:
        items = [*items[:_MAX_LISTED], "..."]
    return ", ".join(items)


# ----------------------------------------------------------------------------- declarations


def check_names(names: Sequence[str]) -> list[str]:
    """Problems of a task's declared result names, as sentence fragments (validation
    prefixes where: ``task "train": ...``)."""
    problems: list[str] = []
    seen: set[str] = set()
    for name in names:
        if len(name) > MAX_NAME_LENGTH or not _NAME.fullmatch(name):
            problems.append(
                f"result name {_q(name)} is not valid: a result name is a DNS label (at most "
                f"{MAX_NAME_LENGTH} characters of a-z, 0-9 and '-', starting and ending with a "
                "letter or digit)"
            )
        elif name in seen:
            problems.append(f"result {_q(name)} is declared twice")
        seen.add(name)
    if len(names) > MAX_RESULTS:
        problems.append(
            f"{len(names)} results are declared; a task may declare at most {MAX_RESULTS}"
        )
    return problems


def message_limit(containers: int = 1) -> int:
    """Bytes of termination message the kubelet keeps for one container of a pod with
    ``containers`` containers (init containers count too)."""
    return min(MESSAGE_BYTES, _POD_MESSAGE_BYTES // max(containers, 1))


# ----------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class InvalidResults:
    """The attempt fails with reason ``InvalidResults`` and this message (it is retried
    under the step's policy like any failure)."""

    message: str
    reason: str = INVALID_RESULTS


def _limit_hint(message: str, limit: int) -> str:
    if len(message.encode()) >= limit - 16:
        return (
            f" (it is {len(message.encode())} bytes: the kubelet keeps at most {limit} bytes of "
            "a termination message, so a longer one is cut; pass large data by reference, "
            "e.g. an object store URI)"
        )
    return ""


def parse(
    message: str | None, declared: Sequence[str], *, limit: int = MESSAGE_BYTES
) -> dict[str, str] | InvalidResults:
    """The results a ``main`` container reported, in declared order, or why they are invalid.

    ``message`` is the container's ``state.terminated.message`` (None when it wrote none).
    Every problem is named at once: missing results, undeclared keys, non-string values.
    """
    path = f"${RESULTS_PATH_ENV} ({TERMINATION_MESSAGE_PATH})"
    if message is None or not message.strip():
        return InvalidResults(
            f"the main container wrote no results to {path}; it declares {_names(declared)}"
        )
    try:
        value = json.loads(message)
    except json.JSONDecodeError as err:
        return InvalidResults(
            f"the results in {path} are not JSON ({err.msg} at character {err.pos})"
            + _limit_hint(message, limit)
            + ': write one object of strings, e.g. {"name": "value"}'
        )
    if not isinstance(value, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(value), "a number"
        )
        return InvalidResults(
            f"the results in {path} are {kind}, not an object of strings such as "
            '{"name": "value"}'
        )
    problems: list[str] = []
    missing = [n for n in declared if n not in value]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        problems.append(f"declared result{plural} {_names(missing)} missing")
    undeclared = [k for k in value if k not in set(declared)]
    if undeclared:
        plural = "s" if len(undeclared) > 1 else ""
        problems.append(
            f"undeclared result{plural} {_names(undeclared)} (the task declares {_names(declared)})"
            if declared
            else f"undeclared result{plural} {_names(undeclared)} (the task declares none)"
        )
    not_strings = [k for k in declared if k in value and not isinstance(value[k], str)]
    for k in not_strings[:_MAX_LISTED]:
        shown = json.dumps(value[k])
        shown = shown if len(shown) <= 40 else shown[:39] + "…"
        problems.append(f"result {_q(k)} is {shown}, not a string (quote it)")
    if problems:
        return InvalidResults(f"invalid results in {path}: " + "; ".join(problems))
    return {n: value[n] for n in declared}


# ----------------------------------------------------------------------------- status budget


def status_bytes(results: Mapping[str, str]) -> int:
    """Bytes ``results`` take in the status, as the ``[{name, value}]`` list they are kept
    in (compact JSON, UTF-8)."""
    if not results:
        return 0
    items = [{"name": n, "value": v} for n, v in results.items()]
    return len(json.dumps(items, ensure_ascii=False, separators=(",", ":")).encode())


def admit(
    used: int, adding: Mapping[str, str], *, step: str, budget: int = STATUS_BUDGET_BYTES
) -> str | None:
    """None when ``adding`` fits in what is left of the budget, else the message the
    producing step fails with (reason :data:`RESULTS_TOO_LARGE`, not retried: the same
    results would not fit either)."""
    size = status_bytes(adding)
    if used + size <= budget:
        return None
    left = max(budget - used, 0)
    return (
        f'the results of task "{step}" are {_kib(size)}, but a pipeline keeps at most '
        f"{budget // 1024} KiB of results in its status and {_kib(left)} are left: pass large "
        "data by reference (write it to a volume or an object store and hand on its URI)"
    )


def _kib(n: int) -> str:
    return f"{n} bytes" if n < 1024 else f"{n / 1024:.1f} KiB"


def reserved_bytes(producers: int, budget: int = STATUS_BUDGET_BYTES) -> int:
    """What a pipeline with ``producers`` steps that declare results must leave room for in
    its object besides spec and status (for validation's size check): the budget, or less
    when that few steps cannot fill it."""
    per_step = MESSAGE_BYTES + MAX_RESULTS * (MAX_NAME_LENGTH + 24)
    return min(budget, producers * per_step)
