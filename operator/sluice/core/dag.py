"""Graph logic for a pipeline's steps.

A pipeline's dependencies are a mapping ``step -> names it depends on``; the
mapping's order is the order the user declared the steps in, and every
function that has to break a tie uses it, so what the operator does (and
what it shows) follows the YAML rather than hash order. Unknown names are
ignored everywhere (validation names them, with a suggestion): the admission
webhook rejects them, and the reconciler must still be total (never crash) if
one slips through. Readiness is decided by the reconciler's schedule stage, which
also weighs retries and maxParallel.

Everything is iterative: a 10,000-step chain must not hit the recursion limit.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["ancestors", "dependents", "find_cycle", "format_cycle", "topological_order"]

Deps = Mapping[str, Sequence[str]]


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


def dependents(deps: Deps, names: Iterable[str]) -> set[str]:
    """Every step that transitively depends on any of ``names``.

    ``names`` themselves are excluded (even if one depends on another): the
    caller marks these ``Blocked`` and must not overwrite the failed steps.
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


def topological_order(deps: Deps) -> list[str] | None:
    """Steps with every step after its dependencies, or None on a cycle.

    Kahn's algorithm that always emits the earliest-declared ready step, so a pipeline
    declared in a valid order comes back exactly as declared (``kubectl sluice`` draws
    its tree in this order). Unknown names are ignored.
    """
    index = {name: i for i, name in enumerate(deps)}
    names = list(deps)
    pending = dict.fromkeys(deps, 0)
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
    return order if len(order) == len(deps) else None


def ancestors(deps: Deps, name: str) -> set[str]:
    """Every known step ``name`` transitively depends on (not ``name`` itself): what
    ``kubectl sluice`` names as the cause of a Blocked step."""
    seen: set[str] = set()
    queue = deque([name])
    while queue:
        for dep in deps.get(queue.popleft(), ()):
            if dep in deps and dep not in seen:
                seen.add(dep)
                queue.append(dep)
    seen.discard(name)
    return seen
