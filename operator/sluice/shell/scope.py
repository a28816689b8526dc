"""What one operator watches: its namespace patterns, and the names derived from them.

One operator per *scope* (the set of watched namespace patterns): the Lease it
leads with and the local webhook configuration it registers are named after a
digest of that scope, so operators watching different namespaces never compete.

The patterns are kopf's (``kopf._cogs.structs.references.match_namespace``):
comma-separated globs, ``!`` excludes, a leading exclusion implies a catch-all
first. tests/unit/test_scope.py checks :func:`match` against kopf's own matcher.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Sequence
from typing import Final

__all__ = ["GLOB_CHARS", "has_globs", "match", "scoped_name", "watched"]

GLOB_CHARS: Final = frozenset("*?[]!,")
"""Characters that make a pattern more than one namespace's name. Namespace names
are DNS labels, so none of these can appear in one: a pattern with any of them
needs namespace scanning (kopf) and a broad webhook selector."""


def has_globs(patterns: Sequence[str]) -> bool:
    return any(GLOB_CHARS & set(p) for p in patterns)


def scoped_name(base: str, patterns: Sequence[str]) -> str:
    """``base`` for all namespaces, else ``base-<digest of the sorted patterns>``."""
    if not patterns:
        return base
    digest = hashlib.sha256("\0".join(sorted(patterns)).encode()).hexdigest()[:10]
    return f"{base}-{digest}"


def watched(namespace: str | None, patterns: Sequence[str]) -> bool:
    """Whether ``namespace`` is one the operator watches (no patterns: every one)."""
    if not patterns:
        return True
    return namespace is not None and any(match(namespace, p) for p in patterns)


def match(name: str, pattern: str) -> bool:
    """kopf's rule for one pattern (see the module docs)."""
    globs = [g.strip() for g in pattern.split(",")]
    if not globs or globs[0].startswith("!"):
        globs.insert(0, "*")
    matches = first = fnmatch.fnmatchcase(name, globs[0])
    for glob in globs[1:]:
        if glob.startswith("!"):
            matches = matches and not fnmatch.fnmatchcase(name, glob.lstrip("!"))
        else:
            matches = matches or (first and fnmatch.fnmatchcase(name, glob))
    return matches
