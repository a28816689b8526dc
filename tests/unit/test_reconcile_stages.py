"""The reconcile's parts on their own: the conditions table, the two pure stages, enums."""

from __future__ import annotations

import itertools

import pytest

from sluice.api import FailureKind, PipelinePhase, TaskPhase
from sluice.core import retry
from sluice.core.conditions import CONDITIONS, conditions_for
from sluice.core.reconcile import decide, prepare, reconcile
from support.world import T0, World

IMG = {"image": "busybox:1.36"}


@pytest.mark.parametrize(
    ("phase", "active", "suspended"),
    list(itertools.product([None, *PipelinePhase], [False, True], [False, True])),
)
def test_every_phase_has_a_row_of_conditions(
    phase: PipelinePhase | None, active: bool, suspended: bool
) -> None:
    rows = conditions_for(phase, active, suspended)

    assert rows in CONDITIONS.values()
    types = [t for t, *_ in rows]
    # A Failed run keeps the Succeeded condition its failure set (InvalidSpec, Timeout).
    expected = ["Progressing", "Degraded"] if phase == PipelinePhase.FAILED else None
    assert types == (expected or ["Succeeded", "Progressing", "Degraded"])


def test_a_degraded_run_is_progressing_only_while_attempts_are_active() -> None:
    def progressing(active: bool) -> str:
        rows = conditions_for(PipelinePhase.DEGRADED, active, False)
        return next(status for type_, status, *_ in rows if type_ == "Progressing")

    assert (progressing(True), progressing(False)) == ("True", "False")


def test_reconcile_is_prepare_then_decide() -> None:
    w = World.of({"tasks": [{"name": "a", "task": IMG}, {"name": "b", "task": IMG}]})
    w.reconcile()
    w.now = T0

    direct = reconcile(w.pipeline, w.tasks, list(w.jobs.values()), w.now)
    staged = decide(prepare(w.pipeline, w.tasks), w.pipeline, list(w.jobs.values()), w.now)

    assert staged == direct


def test_one_failure_kind_from_the_classifier_to_the_retry_policy() -> None:
    kind = retry.classify_job_failure("DeadlineExceeded", None)

    assert kind is FailureKind.DEADLINE_EXCEEDED
    assert retry.is_retryable(kind, [FailureKind.DEADLINE_EXCEEDED])
    assert not retry.is_retryable(kind, [FailureKind.FAILED])
    assert tuple(FailureKind) == retry.FAILURE_KINDS


def test_transitions_carry_enum_phases_that_read_as_their_names() -> None:
    w = World.of({"tasks": [{"name": "a", "task": IMG}]})
    plan = w.reconcile()

    (t,) = plan.transitions
    assert (t.old, t.new) == (TaskPhase.PENDING, TaskPhase.RUNNING)
    assert t.new == "Running" and str(t.new) == "Running"
