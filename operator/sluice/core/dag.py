"""Graph logic for a pipeline's tasks.

A pipeline's dependencies are a mapping ``task -> names it depends on``; the
mapping's order is the order the user declared the tasks in, and every
function that has to break a tie uses it, so what the operator does (and
what it shows) follows the YAML rather than hash order. Unknown names are
ignored everywhere except :func:`unknown_dependencies` / :func:`validate`:
the admission webhook rejects them, and the reconciler must still be total
(never crash) if one slips through.

Everything is iterative: a 10,000-task chain must not hit the recursion limit.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Mapping, Sequence, Set

__all__ = [
    "DagError",
    "ancestors",
    "dependents",
    "find_cycle",
    "format_cycle",
    "ready",
    "topological_order",
    "unknown_dependencies",
    "validate",
]

Deps = Mapping[str, Sequence[str]]


class DagError(ValueError):
    """The dependency graph is invalid; the message is meant for a human.

    ``unknown`` and ``cycle`` carry the structured findings so callers (the
    webhook, status conditions) need not parse the message.
    """

    def __init__(
        self,
        message: str,
        *,
        unknown: Sequence[tuple[str, str]] = (),
        cycle: Sequence[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.unknown: list[tuple[str, str]] = list(unknown)
        self.cycle: list[str] | None = list(cycle) if cycle is not None else None


def unknown_dependencies(deps: Deps) -> list[tuple[str, str]]:
    """Every ``(task, unknown name)`` pair, sorted and without duplicates."""
    return sorted({(task, dep) for task, names in deps.items() for dep in names if dep not in deps})


def find_cycle(deps: Deps) -> list[str] | None:
    """One dependency cycle, or None.

    The cycle follows ``depends on`` edges and repeats its first name at the
    end (``["a", "b", "a"]``: a depends on b, b on a). Start nodes and
    neighbours are visited in sorted order and the result is rotated to start
    at its smallest name, so the answer depends only on the edge set, not on
    declaration order: the same broken pipeline always gets the same message.
    """
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(deps, white)
    for start in sorted(deps):
        if colour[start] != white:
            continue
        # Explicit DFS stack of (node, sorted known neighbours, next index);
        # ``path`` mirrors the grey nodes and ``position`` indexes into it.
        path: list[str] = [start]
        position: dict[str, int] = {start: 0}
        stack: list[tuple[str, list[str], int]] = [(start, _known_sorted(deps, start), 0)]
        colour[start] = grey
        while stack:
            node, neighbours, i = stack[-1]
            if i == len(neighbours):
                stack.pop()
                path.pop()
                del position[node]
                colour[node] = black
                continue
            stack[-1] = (node, neighbours, i + 1)
            nxt = neighbours[i]
            state = colour[nxt]
            if state == grey:
                cycle = path[position[nxt] :]
                k = cycle.index(min(cycle))
                cycle = cycle[k:] + cycle[:k]
                return [*cycle, cycle[0]]
            if state == white:
                colour[nxt] = grey
                position[nxt] = len(path)
                path.append(nxt)
                stack.append((nxt, _known_sorted(deps, nxt), 0))
    return None


def _known_sorted(deps: Deps, name: str) -> list[str]:
    return sorted({d for d in deps[name] if d in deps})


def format_cycle(cycle: Sequence[str]) -> str:
    """``"extract -> clean -> extract"``: how a cycle is shown to users."""
    return " -> ".join(cycle)


def validate(deps: Deps) -> None:
    """Raise :class:`DagError` naming every unknown dependency and a cycle.

    Both problems are reported at once so a user fixes a pipeline in one
    round trip instead of discovering the cycle after fixing the typo.
    """
    unknown = unknown_dependencies(deps)
    cycle = find_cycle(deps)
    problems = [f'task "{task}" depends on unknown task "{dep}"' for task, dep in unknown]
    if cycle is not None:
        problems.append(f"cycle: {format_cycle(cycle)}")
    if problems:
        raise DagError("; ".join(problems), unknown=unknown, cycle=cycle)


def topological_order(deps: Deps) -> list[str]:
    """Tasks with every task after its dependencies.

    Kahn's algorithm that always emits the earliest-declared ready task, so a
    pipeline declared in a valid order comes back exactly as declared. (The
    heap makes it O((V+E) log V); a FIFO queue would be linear but would
    reorder tasks the user had already ordered.) Raises :class:`DagError`
    on a cycle.
    """
    index = {name: i for i, name in enumerate(deps)}
    names = list(deps)
    pending = {name: 0 for name in deps}
    children: dict[str, list[str]] = {name: [] for name in deps}
    for name in deps:
        for dep in set(deps[name]):
            if dep in deps:
                pending[name] += 1
                children[dep].append(name)
    heap = [index[name] for name in deps if pending[name] == 0]
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        name = names[heapq.heappop(heap)]
        order.append(name)
        for child in children[name]:
            pending[child] -= 1
            if pending[child] == 0:
                heapq.heappush(heap, index[child])
    if len(order) != len(deps):
        cycle = find_cycle(deps)
        assert cycle is not None  # Kahn stalls only on a cycle.
        raise DagError(f"cycle: {format_cycle(cycle)}", cycle=cycle)
    return order


def ready(deps: Deps, succeeded: Set[str], started: Set[str]) -> list[str]:
    """Tasks that may start now, in declared order.

    A task is ready when it has not started (or already succeeded) and every
    dependency succeeded; an unknown dependency never succeeds, so a task
    that references one never starts.
    """
    return [
        name
        for name, names in deps.items()
        if name not in started and name not in succeeded and all(dep in succeeded for dep in names)
    ]


def dependents(deps: Deps, names: Iterable[str]) -> set[str]:
    """Every task that transitively depends on any of ``names``.

    ``names`` themselves are excluded (even if one depends on another): the
    caller marks these ``Blocked`` and must not overwrite the failed tasks.
    """
    children: dict[str, list[str]] = {}
    for name, ds in deps.items():
        for dep in ds:
            children.setdefault(dep, []).append(name)
    roots = set(names)
    seen: set[str] = set()
    queue = deque(roots)
    while queue:
        for child in children.get(queue.popleft(), ()):
            if child not in seen:
                seen.add(child)
                queue.append(child)
    return seen - roots


def ancestors(deps: Deps, name: str) -> set[str]:
    """Every known task ``name`` transitively depends on (not ``name`` itself)."""
    seen: set[str] = set()
    queue = deque([name])
    while queue:
        for dep in deps.get(queue.popleft(), ()):
            if dep in deps and dep not in seen:
                seen.add(dep)
                queue.append(dep)
    seen.discard(name)
    return seen
