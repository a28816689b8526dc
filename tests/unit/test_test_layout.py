"""The test tree itself: pytest imports test files by basename (the directories are not
packages), so two files of one name in different directories break collection of the
whole suite, and only when both are collected (as `make test` does)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).parents[1]


def test_no_two_test_files_share_a_basename() -> None:
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [n for n, count in names.items() if count > 1] == []
