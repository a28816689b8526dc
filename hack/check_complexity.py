"""Size and complexity gate for the operator's code (issue 13, "Gates").

Fails, naming each offender, when a module under ``operator/sluice/`` is longer
than ``MAX_LINES`` lines or a function (or method) in it has a cyclomatic
complexity above ``MAX_COMPLEXITY``, as measured by radon's Python API
(``radon.complexity.cc_visit``; the same figures ``radon cc -s`` prints).

Out of scope: ``hack/`` and ``bench/`` (tooling, not the operator), and tests.

``KNOWN`` lists offenders that are still being split up; an entry there is
tolerated, an entry that no longer offends is reported so the list only shrinks.

Run by ``make lint``; ``python hack/check_complexity.py [root]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from radon.complexity import cc_visit

MAX_LINES = 420
MAX_COMPLEXITY = 25

ROOT = Path(__file__).resolve().parent.parent / "operator" / "sluice"

# "path relative to ROOT" for a module, "path:function" for a function.
KNOWN: frozenset[str] = frozenset()


def offences(root: Path) -> list[str]:
    """Every module and function over the limits under ``root``, as ``key: why``."""
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        source = path.read_text(encoding="utf-8")
        lines = len(source.splitlines())
        if lines > MAX_LINES:
            found.append(f"{rel}: {lines} lines (max {MAX_LINES})")
        for block in cc_visit(source):
            if block.complexity > MAX_COMPLEXITY:
                found.append(
                    f"{rel}:{block.fullname}: complexity {block.complexity}"
                    f" (max {MAX_COMPLEXITY}), line {block.lineno}"
                )
    return found


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else ROOT
    found = offences(root)
    keys = {f.split(": ", 1)[0] for f in found}
    bad = [f for f in found if f.split(": ", 1)[0] not in KNOWN]
    stale = sorted(KNOWN - keys) if root == ROOT else []
    for f in bad:
        print(f"too big: {f}", file=sys.stderr)
    for k in stale:
        print(f"no longer over the limits, drop it from KNOWN: {k}", file=sys.stderr)
    return 1 if bad or stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
