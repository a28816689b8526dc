"""Reading a succeeded attempt's results from its pod, for the reconciler.

A step that declares results is ``Succeeded`` only once they are recorded in its status
(``status.tasks[].results``): its dependents need them. :func:`wanted` tells the shell
which Jobs' pods to read (only succeeded Jobs of such steps whose results are not recorded:
other steps cost no extra request); :func:`harvest` turns what was read into the results,
or into the reason the attempt fails (``InvalidResults``, ``ResultsLost``: retried like
any failure; ``ResultsTooLarge``: not retried, the same results would not fit again).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sluice.api import FailureKind, PipelineResult
from sluice.core import dataflow, references, results
from sluice.core.matrix_status import parse_ranges
from sluice.core.observe import JobView
from sluice.core.pods import PodView

__all__ = ["RESULTS_LOST", "Unreadable", "harvest", "pipeline_results", "used_bytes", "wanted"]

RESULTS_LOST: Final = "ResultsLost"
"""The reason of an attempt whose pod went away before its results were read."""


@dataclass(frozen=True)
class Unreadable:
    """The attempt fails with this reason and message."""

    reason: str
    message: str
    kind: FailureKind = FailureKind.FAILED
    final: bool = False
    """Not retried whatever the policy says."""


def harvest(
    job: str,
    pods: Sequence[PodView] | None,
    declared: Sequence[str],
    *,
    step: str,
    used: int,
) -> dict[str, str] | Unreadable | None:
    """The results of succeeded Job ``job`` from its ``pods`` (None: not read yet, wait)."""
    if pods is None:
        return None
    done = sorted(
        (p for p in pods if p.succeeded or p.exit_code == 0),
        key=lambda p: (p.finished_at is not None, p.finished_at or p.created_at or 0),
    )
    if not done:
        return Unreadable(
            RESULTS_LOST,
            f"the pod of Job {job} is gone, so the results its main container wrote "
            "cannot be read; the attempt counts as failed",
            FailureKind.POD_FAILURE,
        )
    parsed = results.parse(done[-1].termination_message, declared)
    if isinstance(parsed, results.InvalidResults):
        return Unreadable(parsed.reason, parsed.message)
    too_large = results.admit(used, parsed, step=step)
    if too_large is not None:
        return Unreadable(results.RESULTS_TOO_LARGE, too_large, final=True)
    return parsed


def used_bytes(recorded: Iterable[Mapping[str, str] | None]) -> int:
    """What the results already recorded take of the status budget."""
    return sum(results.status_bytes(r) for r in recorded if r)


def wanted(
    status: Mapping[str, Any] | None,
    jobs: Iterable[JobView],
    declared: Mapping[str, Sequence[str]],
) -> list[str]:
    """The succeeded Jobs whose pods the reconciler needs: their step declares results
    (``declared``) and the status (raw, as the server shows it) has not recorded them."""
    if not declared:
        return []
    status = status or {}
    run = status.get("run") or 0
    steps = {t.get("name"): t for t in status.get("tasks") or [] if isinstance(t, Mapping)}
    out = []
    done: dict[str, set[int]] = {}
    for v in jobs:
        if v.state != "Succeeded" or v.step not in declared or v.run < run:
            continue
        ts = steps.get(v.step)
        if v.combination is not None:
            if v.step not in done:
                done[v.step] = _recorded(ts)
            if v.run > run or v.combination not in done[v.step]:
                out.append(v.name)  # a combination whose results are not in the arrays yet
            continue
        attempts = (ts or {}).get("attempts") or 0
        if ts is None or v.run > run or v.attempt > attempts:
            out.append(v.name)  # adopted: the status does not know it yet
        elif v.attempt == attempts and ts.get("phase") == "Running" and not ts.get("results"):
            out.append(v.name)
    return out


def _recorded(ts: Mapping[str, Any] | None) -> set[int]:
    """The combinations the raw status has among its ``matrix.done`` (results recorded)."""
    matrix = (ts or {}).get("matrix")
    done = matrix.get("done") if isinstance(matrix, Mapping) else None
    return parse_ranges(done if isinstance(done, str) else None)


def pipeline_results(
    spec: Sequence[PipelineResult], recorded: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """The pipeline's results (``spec.results``) from the steps' recorded results; one whose
    references have no value (validation refuses that) is left out."""
    out: dict[str, str] = {}
    for r in spec:
        values = dataflow.text_values(references.find(r.value), results=recorded)
        try:
            out[r.name] = references.substitute(r.value, values, kubelet=False)
        except references.MissingValueError:
            continue
    return out
