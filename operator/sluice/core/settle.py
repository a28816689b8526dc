"""When steps are skipped, when finally steps start, and what the run's outcome is.

Pure functions over step phases (``sluice.api.TaskPhase`` values), for the reconciler:

* :func:`gate`: which pending steps whose dependencies are done run now, which are
  ``Skipped`` (their ``when`` is false: ``WhenFalse``; they use results of a skipped step:
  ``UpstreamSkipped``) and which fail (their ``when`` errs: ``WhenError``). A skipped step
  counts as done for ordering, so a step that only ``dependsOn`` it still runs; skips
  propagate along result references, transitively, in one call.
* :func:`main_outcome`: whether the main steps have settled, and how: ``Succeeded`` (all
  succeeded or were skipped), ``Degraded`` (a step failed and nothing more can run) or
  ``Timeout``. That is the value of ``$(tasks.status)``, and finally steps start then.
* :func:`rearm_finally`: whether finally steps that ran must run again (the main steps
  recovered and settled again, with another outcome).
* :func:`run_phase` and :func:`progress`: the pipeline's phase from both, and what
  ``kubectl get pl`` shows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from sluice.core import dag
from sluice.core.when import WhenError, WhenFalse

__all__ = [
    "ACTIVE",
    "DONE",
    "UPSTREAM_FAILED",
    "UPSTREAM_SKIPPED",
    "WHEN_FALSE",
    "Decision",
    "MainOutcome",
    "RunPhase",
    "gate",
    "main_outcome",
    "progress",
    "rearm_finally",
    "run_phase",
    "step_statuses",
]

WHEN_FALSE: Final = "WhenFalse"
UPSTREAM_SKIPPED: Final = "UpstreamSkipped"
UPSTREAM_FAILED: Final = "UpstreamFailed"

DONE: Final = frozenset({"Succeeded", "Skipped"})
"""Phases that count as done for ordering and for progress."""
ACTIVE: Final = frozenset({"Running", "Retrying"})
"""Phases of a step that will still do something by itself."""

MainOutcome = Literal["Succeeded", "Degraded", "Timeout"]


@dataclass(frozen=True)
class Decision:
    """What becomes of a pending step whose dependencies are done."""

    action: Literal["run", "skip", "fail"]
    reason: str | None = None
    message: str | None = None


_RUN: Final = Decision("run")


def _order(deps: Mapping[str, Sequence[str]]) -> list[str]:
    # Invalid specs (a cycle) never get here; stay total if one does.
    return dag.topological_order(deps) or list(deps)


def gate(
    deps: Mapping[str, Sequence[str]],
    phases: Mapping[str, str],
    *,
    result_producers: Mapping[str, Sequence[str]],
    condition: Callable[[str, Mapping[str, str]], bool | WhenFalse | WhenError | None],
) -> dict[str, Decision]:
    """Decisions for every ``Pending`` step of ``deps`` whose dependencies are all done.

    ``deps`` is the merged graph (``dependsOn`` and references) of one kind of step (main
    or finally); ``phases`` holds the phases of every step (those of the other kind too: a
    finally step uses main steps' results); ``result_producers[step]`` the steps whose
    *results* it uses (a reference to a phase or status does not propagate skips).
    ``condition(step, phases)`` evaluates the step's ``when`` against the phases as decided
    so far (None: it has none), typically ``sluice.core.when.decide`` over values the caller
    gathers from the status (:func:`sluice.core.when.Compiled.references` says which).

    Decisions are made in dependency order and applied to the phases as they go, so a chain
    of skips resolves in one call. A step decided ``run`` is merely ready: the caller still
    applies ``maxParallel``, suspension and failure policy (and evaluates again next time,
    with the same result, if it has to wait).
    """
    now = dict(phases)
    out: dict[str, Decision] = {}
    for step in _order(deps):
        if now.get(step, "Pending") != "Pending":
            continue
        if not all(
            now.get(d) in DONE if d in deps else d in now  # the other kind has settled
            for d in deps[step]
        ):
            continue  # waiting; an unknown dependency never completes (validation refuses it)
        decision = _decide(step, now, result_producers.get(step, ()), condition)
        out[step] = decision
        if decision.action == "skip":
            now[step] = "Skipped"
        elif decision.action == "fail":
            now[step] = "Failed"
    return out


def _decide(
    step: str,
    phases: Mapping[str, str],
    producers: Sequence[str],
    condition: Callable[[str, Mapping[str, str]], bool | WhenFalse | WhenError | None],
) -> Decision:
    for producer in producers:
        phase = phases.get(producer)
        if phase == "Skipped":
            return Decision(
                "skip",
                UPSTREAM_SKIPPED,
                f'it uses results of "{producer}", which was skipped',
            )
        if phase != "Succeeded":
            # Only a finally step gets here (a main step waits for its producers, and is
            # Blocked when one fails): the producer failed or never ran.
            return Decision(
                "skip",
                UPSTREAM_FAILED,
                f'it uses results of "{producer}", which has none ({(phase or "unknown").lower()})',
            )
    verdict = condition(step, phases)
    if verdict is None or verdict is True:
        return _RUN
    if isinstance(verdict, WhenError):
        return Decision("fail", verdict.reason, verdict.message)
    if isinstance(verdict, WhenFalse):
        return Decision("skip", WHEN_FALSE, verdict.message)
    return Decision("skip", WHEN_FALSE, "its when condition is false")


def main_outcome(
    phases: Sequence[str], *, timed_out: bool = False, stop_all: bool = False
) -> MainOutcome | None:
    """How the main steps settled, or None while something can still run.

    ``phases`` are the main steps' phases; ``stop_all`` is ``failurePolicy: StopAll`` (after
    a failure nothing new starts, so pending steps wait for nothing). A suspended pipeline
    has not settled: its pending steps run once it resumes.
    """
    if timed_out:
        return "Timeout"
    if all(p in DONE for p in phases):
        return "Succeeded"
    if "Failed" not in phases or any(p in ACTIVE for p in phases):
        return None
    waiting = ("Blocked",) if not stop_all else ("Blocked", "Pending")
    if all(p in DONE or p == "Failed" or p in waiting for p in phases):
        return "Degraded"
    return None


def step_statuses(phases: Mapping[str, str]) -> dict[str, str]:
    """``$(tasks.STEP.status)`` of each main step once they settled: its phase, ``Pending``
    reading as ``Blocked`` (under ``StopAll`` it never started because something failed)."""
    return {step: "Blocked" if phase == "Pending" else phase for step, phase in phases.items()}


def rearm_finally(ran_for: MainOutcome | None, outcome: MainOutcome | None) -> bool:
    """Whether the finally steps, which last ran for ``ran_for`` (None: not yet in this run),
    must be reset to Pending (with new attempts and a fresh budget): the main steps are no
    longer settled (a failed step was fixed or retried), or settled with another outcome.
    A rerun (``sluice.dev/rerun``) starts with fresh finally steps anyway.
    """
    return ran_for is not None and outcome != ran_for


RunPhase = Literal["Pending", "Running", "Succeeded", "Degraded", "Failed"]


def run_phase(
    main: Sequence[str], finally_: Sequence[str], outcome: MainOutcome | None
) -> tuple[RunPhase | None, bool]:
    """The pipeline's phase and whether the run has finished.

    The phase is None when the main steps decide it alone as today (Pending or Running);
    with ``outcome`` known (:func:`main_outcome`), the finally steps take part:

    * a main step failed: ``Degraded``, while finally steps run and after;
    * a timeout: ``Failed`` (reason Timeout), while finally steps run and after;
    * all main steps succeeded or were skipped: ``Running`` while finally steps run, then
      ``Succeeded``, or ``Degraded`` when a finally step failed (after its retries).

    The run has finished once the main steps settled and every finally step too (a
    finally step that failed past its retries counts as settled).
    """
    if outcome is None:
        return ("Degraded" if "Failed" in main else None), False
    settled = all(p in DONE or p == "Failed" or p == "Blocked" for p in finally_)
    if outcome == "Timeout":
        return "Failed", settled
    if outcome == "Degraded":
        return "Degraded", settled
    if not settled:
        return "Running", False
    return ("Degraded" if "Failed" in finally_ else "Succeeded"), True


def progress(main: Sequence[str], finally_: Sequence[str] = ()) -> str:
    """``done/total`` over all steps, skipped ones counting as done (``4/6``)."""
    phases = [*main, *finally_]
    return f"{sum(1 for p in phases if p in DONE)}/{len(phases)}"
