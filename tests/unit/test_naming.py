"""Unit and property tests for sluice.core.naming.

Job names are the operator's idempotency key, so these tests pin exact
names (changing them would orphan the Jobs of running pipelines on upgrade)
and check validity and injectivity hard.
"""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.core.naming import (
    ANNOTATION_PIPELINE,
    ANNOTATION_SPEC_HASH,
    ANNOTATION_TASK,
    LABEL_ATTEMPT,
    LABEL_COMBINATION,
    LABEL_MANAGED_BY,
    LABEL_PIPELINE,
    LABEL_RUN,
    LABEL_TASK,
    MANAGED_BY,
    is_dns_label,
    is_dns_subdomain,
    is_label_value,
    job_annotations,
    job_labels,
    job_name,
    label_value,
)

# Every Job name, shortened or not: the hash is always 8 base36 characters.
NAME = re.compile(r"(?P<head>.+)-(?P<hash>[0-9a-z]{8})-(?P<run>[0-9]+)-(?P<attempt>[0-9]+)")


# --- job_name: shape ---------------------------------------------------------


def test_job_name_is_pipeline_task_hash_run_attempt() -> None:
    assert job_name("churn-model", "train", 1, 1) == "churn-model-train-sg7lo84k-1-1"


def test_job_name_is_stable_across_releases() -> None:
    # Pinned: a change here renames the Jobs of in-flight runs on upgrade.
    assert job_name("analytics.prod.example.com", "train", 3, 2) == (
        "analytics-prod-example-com-train-c4dod3m0-3-2"
    )
    assert job_name("a" * 253, "b" * 63, 1, 1) == (
        "aaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-qonnz5yn-1-1"
    )


def test_job_name_is_deterministic() -> None:
    assert job_name("p", "t", 4, 7) == job_name("p", "t", 4, 7)


def test_job_name_always_contains_the_hash() -> None:
    name = job_name("p", "t", 1, 1)
    match = NAME.fullmatch(name)
    assert match is not None
    assert match["head"] == "p-t"
    assert (match["run"], match["attempt"]) == ("1", "1")


def test_job_name_maps_dots_in_pipeline_to_dashes() -> None:
    name = job_name("team.etl", "load", 1, 1)
    assert name.startswith("team-etl-load-")
    assert is_dns_label(name)


def test_run_and_attempt_appear_in_full_at_the_end() -> None:
    assert job_name("p", "t", 12, 3).endswith("-12-3")
    assert job_name("a" * 253, "b" * 63, 123456, 789).endswith("-123456-789")


def test_ambiguous_dash_split_gets_different_names() -> None:
    assert job_name("a-b", "c", 1, 1) != job_name("a", "b-c", 1, 1)


def test_dot_and_dash_pipelines_get_different_names() -> None:
    assert job_name("a.b", "c", 1, 1) != job_name("a-b", "c", 1, 1)


def test_run_and_attempt_boundaries_do_not_collide() -> None:
    assert job_name("p", "t", 1, 23) != job_name("p", "t", 12, 3)
    assert job_name("p", "t", 1, 1) != job_name("p", "t", 11, 1)


def test_every_split_and_dot_variant_of_one_readable_name_is_distinct() -> None:
    # 7 segments, 6 separators: the pipeline takes the first k segments with each
    # of its separators '.' or '-'; the task takes the rest. All 63 inputs read
    # "a-b-c-d-e-f-g" before the hash; the hash must tell them apart.
    segments = list("abcdefg")
    inputs = []
    for k in range(1, len(segments)):
        for seps in itertools.product("-.", repeat=k - 1):
            pipeline = segments[0] + "".join(
                s + x for s, x in zip(seps, segments[1:k], strict=True)
            )
            inputs.append((pipeline, "-".join(segments[k:])))
    assert len(inputs) == 63
    names = {job_name(p, t, 1, 1) for p, t in inputs}
    assert len(names) == len(inputs)
    assert {NAME.fullmatch(n)["head"] for n in names} == {"a-b-c-d-e-f-g"}  # type: ignore[index]


def test_job_name_is_injective_over_a_grid_of_adversarial_names() -> None:
    pipelines = [
        "a", "a-b", "a.b", "a-b-c", "a.b-c", "a-b.c", "a.b.c", "1", "1-2", "1.2", "a--b",
        "p" * 63, "p" * 64, "p" * 200, "p" * 200 + ".q", "p" * 200 + "-q", "p" * 253,
    ]  # fmt: skip
    tasks = ["b", "c", "b-c", "c-b", "a", "1", "2-1", "x--y", "t" * 40, "t" * 62, "t" * 63]
    keys = [
        (p, t, run, attempt)
        for p in pipelines
        for t in tasks
        for run in (1, 2, 11, 12, 123)
        for attempt in (1, 2, 3, 23)
    ]
    names = {job_name(*key) for key in keys}
    assert len(names) == len(keys)
    assert all(is_dns_label(n) for n in names)


def test_name_of_exactly_63_characters_is_not_shortened() -> None:
    # "{pipeline}-{task}" may take 50 = 63 - len("-xxxxxxxx-1-1") characters.
    pipeline, task = "p" * 26, "t" * 23
    name = job_name(pipeline, task, 1, 1)
    assert len(name) == 63
    match = NAME.fullmatch(name)
    assert match is not None
    assert match["head"] == f"{pipeline}-{task}"


def test_name_of_64_characters_is_shortened_by_one() -> None:
    pipeline, task = "p" * 27, "t" * 23
    name = job_name(pipeline, task, 1, 1)
    assert len(name) == 63
    match = NAME.fullmatch(name)
    assert match is not None
    assert match["head"] == "p" * 26 + "-" + task


# --- job_name: shortening ----------------------------------------------------


def test_long_pipeline_is_cut_before_the_task() -> None:
    name = job_name("p" * 100, "train-model", 1, 1)
    assert len(name) == 63
    match = NAME.fullmatch(name)
    assert match is not None
    assert match["head"].endswith("-train-model")
    assert match["head"].startswith("p" * 16)


def test_pipeline_is_cut_no_shorter_than_minimum_then_task_is_cut() -> None:
    name = job_name("p" * 100, "t" * 63, 1, 1)
    match = NAME.fullmatch(name)
    assert match is not None
    pipeline_part, task_part = match["head"].split("-")
    assert pipeline_part == "p" * 16
    assert task_part == "t" * (63 - len("-xxxxxxxx-1-1") - 16 - 1)


def test_short_pipeline_is_kept_whole_when_task_is_cut() -> None:
    name = job_name("etl", "t" * 63, 1, 1)
    match = NAME.fullmatch(name)
    assert match is not None
    assert match["head"].startswith("etl-ttt")
    assert len(name) == 63


def test_shortening_strips_dangling_dashes() -> None:
    # Pipeline and task parts share 49 characters: the pipeline is cut to 44,
    # right after its two dashes, which must not be left dangling.
    name = job_name("p" * 42 + "--" + "q" * 60, "train", 1, 1)
    match = NAME.fullmatch(name)
    assert match is not None
    assert match["head"] == "p" * 42 + "-train"
    assert is_dns_label(name)


def test_shortening_strips_dangling_dash_from_task() -> None:
    # The pipeline is cut to its minimum of 16, leaving the task 33: up to its dash.
    task = "t" * 32 + "-" + "u" * 30
    match = NAME.fullmatch(job_name("p" * 100, task, 1, 1))
    assert match is not None
    assert match["head"] == "p" * 16 + "-" + "t" * 32


def test_shortened_names_of_names_sharing_a_long_prefix_are_distinct() -> None:
    names = {job_name("p" * 80 + f"-{i}", "task", 1, 1) for i in range(2000)}
    assert len(names) == 2000
    assert all(len(n) == 63 for n in names)


def test_shortened_name_differs_from_a_full_name_that_reads_the_same() -> None:
    # Both forms carry the same 8-character hash segment, so the hash alone tells a
    # shortened name from an unshortened one whose readable part it was cut down to.
    full = job_name("p" * 16, "t" * 33, 1, 1)
    short = job_name("p" * 100, "t" * 33, 1, 1)
    assert len(full) == len(short) == 63
    assert full.rsplit("-", 3)[0] == short.rsplit("-", 3)[0] == "p" * 16 + "-" + "t" * 33
    assert full != short


def test_huge_run_and_attempt_still_fit() -> None:
    name = job_name("p" * 253, "t" * 63, 10**12, 10**12)
    assert len(name) <= 63
    assert name.endswith(f"-{10**12}-{10**12}")
    assert is_dns_label(name)


def test_run_and_attempt_too_long_to_fit_are_rejected() -> None:
    with pytest.raises(ValueError, match="too long"):
        job_name("p" * 100, "t", 10**30, 10**30)


# --- job_name: bad input -----------------------------------------------------


@pytest.mark.parametrize(
    "pipeline", ["", "Upper", "-lead", "trail-", "a..b", "a_b", "a" * 254, "a\n"]
)
def test_invalid_pipeline_name_is_rejected(pipeline: str) -> None:
    with pytest.raises(ValueError, match="pipeline name"):
        job_name(pipeline, "t", 1, 1)


@pytest.mark.parametrize("task", ["", "Task", "a.b", "-a", "a-", "t" * 64, "a\n"])
def test_invalid_task_name_is_rejected(task: str) -> None:
    with pytest.raises(ValueError, match="task name"):
        job_name("p", task, 1, 1)


@pytest.mark.parametrize(("run", "attempt"), [(0, 1), (1, 0), (-1, 1), (True, 1), (1, 1.0)])
def test_run_and_attempt_must_be_positive_integers(run: int, attempt: int) -> None:
    with pytest.raises(ValueError, match="must be an integer >= 1"):
        job_name("p", "t", run, attempt)


# --- job_name: properties ----------------------------------------------------

_LABEL_ALPHABET = "ab09-"


def _dns_label(raw: str, limit: int = 63) -> str:
    raw = raw[:limit] or "a"
    if not raw[0].isalnum():
        raw = "a" + raw[1:]
    if not raw[-1].isalnum():
        raw = raw[:-1] + "9"
    return raw


dns_labels = st.text(_LABEL_ALPHABET, min_size=1, max_size=63).map(_dns_label)
dns_subdomains = (
    st.lists(st.text(_LABEL_ALPHABET, min_size=1, max_size=70).map(_dns_label), min_size=1)
    .map(lambda parts: ".".join(parts)[:253].rstrip(".-"))
    .map(lambda s: s if s else "a")
    .filter(is_dns_subdomain)
)
counts = st.integers(min_value=1, max_value=10**9)
job_keys = st.tuples(dns_subdomains, dns_labels, counts, counts)


@settings(max_examples=300, deadline=None)
@given(job_keys)
def test_job_name_is_always_a_valid_dns_label_ending_in_run_and_attempt(
    key: tuple[str, str, int, int],
) -> None:
    pipeline, task, run, attempt = key
    name = job_name(pipeline, task, run, attempt)
    assert is_dns_label(name), name
    assert len(name) <= 63
    assert name.endswith(f"-{run}-{attempt}")
    assert name == job_name(pipeline, task, run, attempt)
    assert NAME.fullmatch(name) is not None


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.lists(job_keys, min_size=2, max_size=30, unique=True))
def test_job_name_is_injective(keys: list[tuple[str, str, int, int]]) -> None:
    # Derandomized: distinct keys whose 8-character hashes collide are possible in
    # principle, so a random seed could (very rarely) flake.
    names = [job_name(*key) for key in keys]
    assert len(set(names)) == len(keys)


@st.composite
def ambiguous_keys(draw: st.DrawFn) -> list[tuple[str, str, int, int]]:
    """Keys that read alike: one string split at different dashes, dots swapped for dashes."""
    n = draw(st.integers(min_value=2, max_value=12))
    segments = draw(st.lists(st.text("a1", min_size=1, max_size=8), min_size=n, max_size=n))
    run = draw(st.integers(1, 3))
    keys = set()
    for k in range(1, n):
        seps = draw(st.lists(st.sampled_from("-."), min_size=k - 1, max_size=k - 1))
        pipeline = segments[0] + "".join(s + x for s, x in zip(seps, segments[1:k], strict=True))
        task = "-".join(segments[k:])
        if len(task) <= 63:
            keys.add((pipeline, task, run, 1))
    return sorted(keys)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(ambiguous_keys())
def test_job_name_is_injective_over_adversarial_look_alikes(
    keys: list[tuple[str, str, int, int]],
) -> None:
    names = [job_name(*key) for key in keys]
    assert len(set(names)) == len(keys)
    assert all(is_dns_label(n) for n in names)


# --- DNS checks --------------------------------------------------------------


@pytest.mark.parametrize("s", ["a", "0", "a-b", "a--b", "9abc", "x" * 63])
def test_valid_dns_labels(s: str) -> None:
    assert is_dns_label(s)


@pytest.mark.parametrize("s", ["", "A", "a.b", "-a", "a-", "a_b", "x" * 64, "a\n", "a b"])
def test_invalid_dns_labels(s: str) -> None:
    assert not is_dns_label(s)


@pytest.mark.parametrize(
    "s", ["a", "a.b", "a-b.c-d", "x" * 253, ".".join(["x" * 63] * 3 + ["x" * 61])]
)
def test_valid_dns_subdomains(s: str) -> None:
    assert is_dns_subdomain(s)


@pytest.mark.parametrize("s", ["", "a..b", ".a", "a.", "a.-b", "A.b", "x" * 254, "a.b\n"])
def test_invalid_dns_subdomains(s: str) -> None:
    assert not is_dns_subdomain(s)


# --- label values ------------------------------------------------------------


@pytest.mark.parametrize("s", ["", "a", "Train_Model.v2", "a-b", "x" * 63, "a.b.c"])
def test_valid_label_value_is_returned_unchanged(s: str) -> None:
    assert is_label_value(s)
    assert label_value(s) == s


@pytest.mark.parametrize(
    "s", ["x" * 64, "a" * 253, "-a", "a-", "_a", "a b", "a/b", "é", "a\n", "-"]
)
def test_invalid_label_value_is_replaced_by_a_valid_one(s: str) -> None:
    assert not is_label_value(s)
    value = label_value(s)
    assert is_label_value(value), value
    assert re.fullmatch(r"(.*-)?[0-9a-z]{8}", value)


def test_long_label_value_keeps_a_readable_prefix() -> None:
    value = label_value("analytics." + "x" * 300)
    assert value.startswith("analytics.xxx")
    assert len(value) == 63


def test_long_label_values_sharing_a_prefix_stay_distinct() -> None:
    values = {label_value("p" * 100 + str(i)) for i in range(1000)}
    assert len(values) == 1000


def test_label_value_of_only_invalid_characters_is_just_the_hash() -> None:
    assert re.fullmatch(r"[0-9a-z]{8}", label_value("///"))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_label_value_is_always_valid_and_identity_on_valid_values(s: str) -> None:
    value = label_value(s)
    assert is_label_value(value)
    assert (value == s) == is_label_value(s)


# --- labels and annotations --------------------------------------------------


def test_job_labels() -> None:
    assert job_labels("churn-model", "train", 2, 3) == {
        "app.kubernetes.io/managed-by": "sluice",
        "sluice.dev/pipeline": "churn-model",
        "sluice.dev/task": "train",
        "sluice.dev/run": "2",
        "sluice.dev/attempt": "3",
    }


def test_job_labels_shorten_long_pipeline_names() -> None:
    labels = job_labels("a." * 100 + "b", "train", 1, 1)
    assert all(is_label_value(v) for v in labels.values())
    assert len(labels[LABEL_PIPELINE]) <= 63


def test_job_annotations_carry_full_names_and_spec_hash() -> None:
    pipeline = "a" * 200
    assert job_annotations(pipeline, "train", "abc123") == {
        ANNOTATION_PIPELINE: pipeline,
        ANNOTATION_TASK: "train",
        ANNOTATION_SPEC_HASH: "abc123",
    }


def test_label_and_annotation_keys() -> None:
    assert (LABEL_PIPELINE, LABEL_TASK, LABEL_RUN, LABEL_ATTEMPT) == (
        "sluice.dev/pipeline",
        "sluice.dev/task",
        "sluice.dev/run",
        "sluice.dev/attempt",
    )
    assert (LABEL_MANAGED_BY, MANAGED_BY) == ("app.kubernetes.io/managed-by", "sluice")
    assert (ANNOTATION_PIPELINE, ANNOTATION_TASK, ANNOTATION_SPEC_HASH) == (
        "sluice.dev/pipeline-name",
        "sluice.dev/task-name",
        "sluice.dev/spec-hash",
    )


# --- job_name and job_labels: combinations of a matrixed step (issue 15) ------


def test_combination_name_adds_c_index_after_the_hash() -> None:
    assert job_name("churn-model", "train", 1, 1, 0) == "churn-model-train-sg7lo84k-c0-1-1"
    assert job_name("churn-model", "train", 2, 3, 255) == "churn-model-train-sg7lo84k-c255-2-3"


def test_names_without_a_combination_do_not_change() -> None:
    assert job_name("churn-model", "train", 1, 1, None) == "churn-model-train-sg7lo84k-1-1"
    assert job_name("a" * 253, "b" * 63, 1, 1) == (
        "aaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-qonnz5yn-1-1"
    )


def test_long_combination_names_are_cut_like_the_others() -> None:
    name = job_name("a" * 253, "b" * 63, 99, 99, 255)
    assert name == "aaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbbbbbbbbbbbb-qonnz5yn-c255-99-99"
    assert len(name) == 63


def test_combination_must_be_a_non_negative_integer() -> None:
    for bad in (-1, True, 1.0, "1"):
        with pytest.raises(ValueError, match="combination"):
            job_name("p", "t", 1, 1, bad)  # type: ignore[arg-type]


def test_combination_label_only_on_matrixed_jobs() -> None:
    assert LABEL_COMBINATION not in job_labels("p", "t", 1, 1)
    assert job_labels("p", "t", 1, 1, 7)[LABEL_COMBINATION] == "7"
    assert job_labels("p", "t", 1, 1) == {
        k: v for k, v in job_labels("p", "t", 1, 1, 7).items() if k != LABEL_COMBINATION
    }


COMBO = re.compile(
    r"(?P<head>.+)-(?P<hash>[0-9a-z]{8})-c(?P<c>[0-9]+)-(?P<run>[0-9]+)-(?P<a>[0-9]+)"
)


@settings(max_examples=200, deadline=None)
@given(job_keys, st.integers(min_value=0, max_value=10**6))
def test_combination_names_are_valid_and_end_in_combination_run_attempt(
    key: tuple[str, str, int, int], combination: int
) -> None:
    pipeline, task, run, attempt = key
    name = job_name(pipeline, task, run, attempt, combination)
    assert is_dns_label(name) and len(name) <= 63, name
    assert name.endswith(f"-c{combination}-{run}-{attempt}")
    assert COMBO.fullmatch(name) is not None


@settings(max_examples=60, deadline=None, derandomize=True)
@given(job_keys, st.lists(st.integers(0, 5000), min_size=2, max_size=40, unique=True))
def test_combination_names_are_distinct_from_each_other_and_the_plain_name(
    key: tuple[str, str, int, int], combos: list[int]
) -> None:
    names = [job_name(*key, c) for c in combos]
    assert len(set(names)) == len(names)
    assert job_name(*key) not in names


def test_every_combination_run_attempt_of_a_wide_matrix_is_distinct() -> None:
    names = {
        job_name("sweep", "train", run, attempt, c)
        for c in range(256)
        for run in (1, 2, 11)
        for attempt in (1, 2, 3, 12)
    }
    assert len(names) == 256 * 3 * 4
