"""Namespace patterns and scope names (sluice.shell.scope), against kopf's own matcher."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from kopf._cogs.structs import references

from sluice.shell import scope

NAMES = st.text(alphabet="abc-", min_size=1, max_size=5)
GLOB = st.text(alphabet="abc-*?", min_size=1, max_size=5)
PATTERNS = st.lists(st.tuples(st.booleans(), GLOB), min_size=1, max_size=4).map(
    lambda parts: ", ".join(("!" if neg else "") + glob for neg, glob in parts)
)


@given(NAMES, PATTERNS)
def test_match_is_kopfs_match(name: str, pattern: str) -> None:
    assert scope.match(name, pattern) == references.match_namespace(
        references.NamespaceName(name), pattern
    )


@given(st.lists(NAMES | PATTERNS, max_size=3))
def test_what_kopf_would_watch_as_plain_names_has_no_glob_characters(patterns: list[str]) -> None:
    if not scope.has_globs(patterns):
        # kopf watches these by name without scanning; the webhook selects them by name
        assert set(references.select_specific_namespaces(patterns)) == set(patterns)


def test_one_scope_one_name_for_the_lease_and_the_webhook_configuration() -> None:
    assert scope.scoped_name("sluice-operator", []) == "sluice-operator"
    a = scope.scoped_name("sluice-operator", ["b", "a"])
    assert a == scope.scoped_name("sluice-operator", ["a", "b"])  # order does not matter
    assert a != scope.scoped_name("sluice-operator", ["a"])
    assert len(a) == len("sluice-operator-") + 10


def test_brackets_are_globs_too() -> None:
    assert scope.has_globs(["team-[ab]"]) and scope.match("team-a", "team-[ab]")
