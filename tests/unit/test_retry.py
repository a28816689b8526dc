"""Unit and property tests for sluice.core.retry."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.core.retry import (
    DEADLINE_EXCEEDED,
    EVICTED,
    FAILED,
    FAILURE_KINDS,
    POD_FAILURE,
    backoff_seconds,
    classify_job_failure,
    exit_code_from_message,
    is_retryable,
)

# Messages as the Job controller writes them.
EXIT_MESSAGE = (
    "Container main for pod ns/job-abc12 failed with exit code 3 matching FailJob rule at index 1"
)
DISRUPTION_MESSAGE = (
    "Pod ns/job-abc12 has condition DisruptionTarget matching FailJob rule at index 0"
)
DEADLINE_MESSAGE = "Job was active longer than specified deadline"


def test_failure_kinds() -> None:
    assert FAILURE_KINDS == ("Failed", "DeadlineExceeded", "Evicted", "PodFailure")
    assert (FAILED, DEADLINE_EXCEEDED, EVICTED, POD_FAILURE) == FAILURE_KINDS


# --- backoff_seconds ---------------------------------------------------------


def test_first_failure_waits_the_initial_delay() -> None:
    assert backoff_seconds(10, 2, 600, 1) == 10.0


def test_backoff_grows_by_factor_per_failure() -> None:
    assert [backoff_seconds(10, 2, 600, n) for n in range(1, 6)] == [10, 20, 40, 80, 160]


def test_backoff_is_capped_at_maximum() -> None:
    assert backoff_seconds(10, 2, 600, 7) == 600.0
    assert backoff_seconds(10, 2, 600, 100) == 600.0


def test_initial_above_maximum_is_capped() -> None:
    assert backoff_seconds(1000, 2, 600, 1) == 600.0


def test_factor_one_gives_constant_delay() -> None:
    assert backoff_seconds(5, 1, 600, 10_000) == 5.0


def test_zero_initial_delay_retries_immediately() -> None:
    assert backoff_seconds(0, 2, 600, 10_000) == 0.0


def test_zero_maximum_retries_immediately() -> None:
    assert backoff_seconds(10, 2, 0, 3) == 0.0


def test_huge_failure_counts_do_not_overflow() -> None:
    assert backoff_seconds(10, 2, 600, 10_000) == 600.0
    assert backoff_seconds(10, 10**6, 600, 10**9) == 600.0
    assert backoff_seconds(0.5, 1.5, 3600.0, 10**18) == 3600.0


def test_tiny_initial_delay_survives_overflow_of_the_power() -> None:
    # 100.0 ** 160 overflows a float, but 5e-320 * 1e320 is about 5 seconds.
    assert backoff_seconds(5e-320, 100, 600, 161) == pytest.approx(5.0, rel=1e-3)
    assert backoff_seconds(1e-300, 10, 600, 400) == 600.0


def test_backoff_returns_float() -> None:
    assert isinstance(backoff_seconds(10, 2, 600, 1), float)
    assert isinstance(backoff_seconds(10, 2, 600, 10_000), float)


@pytest.mark.parametrize(
    ("initial", "factor", "maximum", "failures", "match"),
    [
        (10, 2, 600, 0, "failures"),
        (-1, 2, 600, 1, "initial"),
        (math.nan, 2, 600, 1, "initial"),
        (10, 0.5, 600, 1, "factor"),
        (10, math.inf, 600, 1, "factor"),
        (10, 2, -1, 1, "maximum"),
        (10, 2, math.inf, 1, "maximum"),
    ],
)
def test_invalid_backoff_settings_are_rejected(
    initial: float, factor: float, maximum: float, failures: int, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        backoff_seconds(initial, factor, maximum, failures)


delays = st.floats(min_value=0, max_value=1e6, allow_nan=False)
factors = st.floats(min_value=1, max_value=100, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(delays, factors, delays, st.integers(min_value=1, max_value=10_000))
def test_backoff_is_monotone_and_capped(
    initial: float, factor: float, maximum: float, failures: int
) -> None:
    now = backoff_seconds(initial, factor, maximum, failures)
    after = backoff_seconds(initial, factor, maximum, failures + 1)
    assert 0 <= now <= after <= maximum
    assert now == min(initial, maximum) or failures > 1
    assert backoff_seconds(initial, factor, maximum, 10_000) >= now


# --- exit_code_from_message --------------------------------------------------


def test_exit_code_is_parsed_from_job_controller_message() -> None:
    assert exit_code_from_message(EXIT_MESSAGE) == 3


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("failed with exit code 137", 137),
        ("Exit code 0", 0),
        ("exit code -1 (windows)", -1),
        ("exit code 1; later exit code 2", 1),
    ],
)
def test_exit_code_variants(message: str, code: int) -> None:
    assert exit_code_from_message(message) == code


@pytest.mark.parametrize("message", [None, "", DISRUPTION_MESSAGE, "exit code", "exit codes 12"])
def test_no_exit_code(message: str | None) -> None:
    assert exit_code_from_message(message) is None


# --- classify_job_failure ----------------------------------------------------


def test_deadline_exceeded_is_its_own_kind() -> None:
    assert classify_job_failure("DeadlineExceeded", DEADLINE_MESSAGE) == "DeadlineExceeded"


def test_disruption_target_rule_means_evicted() -> None:
    assert classify_job_failure("PodFailurePolicy", DISRUPTION_MESSAGE) == "Evicted"


def test_exit_code_rule_means_failed() -> None:
    assert classify_job_failure("PodFailurePolicy", EXIT_MESSAGE) == "Failed"


def test_oom_kill_exit_code_means_failed() -> None:
    message = (
        "Container main for pod ns/j failed with exit code 137 matching FailJob rule at index 1"
    )
    assert classify_job_failure("PodFailurePolicy", message) == "Failed"


def test_pod_failure_policy_without_recognisable_message_is_pod_failure() -> None:
    assert classify_job_failure("PodFailurePolicy", None) == "PodFailure"
    assert classify_job_failure("PodFailurePolicy", "something new") == "PodFailure"


def test_backoff_limit_exceeded_means_failed() -> None:
    assert (
        classify_job_failure("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        == "Failed"
    )


@pytest.mark.parametrize(
    "reason", [None, "", "MaxFailedIndexesExceeded", "FailedIndexes", "deadlineexceeded"]
)
def test_anything_else_is_pod_failure(reason: str | None) -> None:
    assert classify_job_failure(reason, "whatever") == "PodFailure"


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=30)), st.one_of(st.none(), st.text(max_size=80)))
def test_classification_is_always_a_known_kind(reason: str | None, message: str | None) -> None:
    assert classify_job_failure(reason, message) in FAILURE_KINDS


# --- is_retryable ------------------------------------------------------------


def test_kind_listed_in_on_is_retryable() -> None:
    assert is_retryable("Evicted", ["Evicted", "PodFailure"])
    assert is_retryable("Failed", FAILURE_KINDS)


def test_kind_not_listed_in_on_is_not_retryable() -> None:
    assert not is_retryable("Failed", ["Evicted", "PodFailure"])
    assert not is_retryable("Failed", [])


def test_is_retryable_accepts_any_iterable() -> None:
    assert is_retryable("DeadlineExceeded", iter(["DeadlineExceeded"]))
    assert is_retryable("Evicted", {"Evicted"})
