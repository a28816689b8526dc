"""``kubectl sluice retry|rerun|suspend|resume``: the annotation or spec change each
makes, and what it tells the user. ``sluice.kubectl_sluice.app`` parses the arguments
and calls these.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sluice.api import RERUN_ANNOTATION, RETRY_ANNOTATION
from sluice.kubectl_sluice import render
from sluice.kubectl_sluice.kube import Conn

__all__ = ["rerun", "retry", "suspend"]

Clock = Callable[[], datetime]


def _token(current: str | None, now: Clock) -> str:
    token = now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return token + "-1" if token == current else token


def _names(steps: Sequence[render.Step], limit: int = 6) -> str:
    names = [s.name for s in steps]
    return ", ".join(names[:limit]) + (
        f" and {len(names) - limit} more" if len(names) > limit else ""
    )


def _annotation(obj: dict[str, Any], key: str) -> str | None:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(key)
    return value if isinstance(value, str) else None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _annotate(conn: Conn, ns: str, obj: dict[str, Any], key: str, now: Clock) -> None:
    token = _token(_annotation(obj, key), now)
    conn.patch_pipeline(ns, obj["metadata"]["name"], {"metadata": {"annotations": {key: token}}})


def retry(
    conn: Conn, ns: str, obj: dict[str, Any], v: render.PipelineView, prog: str, now: Clock
) -> int:
    """``retry``: one more attempt of the failed steps (the retry annotation)."""
    failed = [s for s in v.steps if s.phase == "Failed"]
    if v.phase == "Failed":
        print(
            f"Pipeline {v.name} is Failed ({render.one_line(v.message) or 'terminal'}): a retry "
            f"does nothing for it; fix its spec, or start a fresh run: `{prog} rerun {v.name}`.",
            file=sys.stderr,
        )
        return 1
    if not failed:
        print(f"Nothing to retry: no step of {v.name} has failed (phase {v.phase or '-'}).")
        return 0
    _annotate(conn, ns, obj, RETRY_ANNOTATION, now)
    blocked = [s for s in v.steps if s.phase == "Blocked"]
    text = (
        f"Retrying {_plural(len(failed), 'failed step')} of {v.name}: {_names(failed)} "
        "(one more attempt now, then the retry policy again)."
    )
    if blocked:
        text += f" Blocked until then: {_names(blocked)}."
    print(text)
    return 0


def rerun(
    conn: Conn, ns: str, obj: dict[str, Any], v: render.PipelineView, prog: str, now: Clock
) -> int:
    """``rerun``: a fresh run of every step (the rerun annotation)."""
    _annotate(conn, ns, obj, RERUN_ANNOTATION, now)
    active = [s for s in v.steps if s.phase == "Running"]
    text = f"Starting run {v.run + 1} of {v.name}: all {_plural(len(v.steps), 'step')} run again."
    if active:
        text += f" The running Jobs of run {v.run} are stopped: {_names(active)}."
    if v.suspend:
        text += f" It is suspended: nothing starts until `{prog} resume {v.name}`."
    print(text)
    return 0


def suspend(conn: Conn, ns: str, v: render.PipelineView, suspend: bool, prog: str) -> int:
    """``suspend`` and ``resume``: spec.suspend."""
    if v.suspend == suspend:
        print(f"Pipeline {v.name} is {'already' if suspend else 'not'} suspended.")
        return 0
    conn.patch_pipeline(ns, v.name, {"spec": {"suspend": suspend}})
    if suspend:
        active = [s for s in v.steps if s.phase == "Running"]
        text = f"Suspended {v.name}: no new steps start"
        if active:
            text += f"; running now, and left to finish: {_names(active)}"
        print(text + f". Resume with `{prog} resume {v.name}`.")
    else:
        print(f"Resumed {v.name}: steps whose dependencies have succeeded start now.")
    return 0
