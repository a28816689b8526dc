"""What the controller makes of a Pipeline's body, apart from the reconcile: which copy
is newer, the body it keeps (without managedFields), and the status of a pipeline
whose Jobs the API server refuses for now."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = ["REJECTED", "not_older", "refused_status", "slim"]


def not_older(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """Whether ``new`` is the same copy of an object as ``old`` or a later one.

    Kubernetes 1.35+ (KEP-5504) guarantees resourceVersions of one resource are
    integers that grow: they are compared as numbers. A resourceVersion that is
    not an integer (opaque, as before KEP-5504 the API promised no more) is only
    compared for equality, and a different copy counts as the later one: the
    newest arrival wins, as it would without any ordering (docs/install.md).
    """
    a = (new.get("metadata") or {}).get("resourceVersion") or ""
    b = (old.get("metadata") or {}).get("resourceVersion") or ""
    if a.isdigit() and b.isdigit():
        return int(a) >= int(b)
    return True


REJECTED = frozenset({400, 422})
"""Refusals of a Job create that are about its spec (BadRequest: strict field validation;
Invalid): the user's to fix. Others (403 quota or RBAC, 429, 5xx) are retried."""


def refused_status(
    body: Mapping[str, Any], current: Mapping[str, Any], message: str
) -> dict[str, Any]:
    """The status of a pipeline whose Jobs the API server refuses for now (a full
    ResourceQuota, RBAC, overload): the last status decided, with a phase and a
    progress if it had none yet, the message, and a ``Progressing`` condition with
    reason ``JobCreateFailed`` (something for ``kubectl wait`` and dashboards). The
    attempts are not recorded: their Jobs don't exist. The next reconcile that
    creates them writes the reconciler's own conditions over this one."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    spec = body.get("spec") or {}
    steps = len(spec.get("tasks") or []) + len(spec.get("finally") or [])
    status = {**current, "message": message}
    status.setdefault("phase", "Pending")
    status.setdefault("progress", f"0/{steps}")
    conditions = [c for c in current.get("conditions") or [] if c.get("type") != "Progressing"]
    old: Mapping[str, Any] = next(
        (c for c in current.get("conditions") or [] if c.get("type") == "Progressing"), {}
    )
    changed = old.get("status") != "False" or old.get("reason") != "JobCreateFailed"
    conditions.append(
        {
            "type": "Progressing",
            "status": "False",
            "reason": "JobCreateFailed",
            "message": message,
            "lastTransitionTime": now if changed else old.get("lastTransitionTime", now),
        }
    )
    status["conditions"] = conditions
    return status


def slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """The Pipeline without metadata.managedFields (half its size; nobody here reads it)."""
    meta = body.get("metadata") or {}
    if "managedFields" not in meta:
        return dict(body)
    return {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
