"""The prepared specs of the pipelines (``core.prepare``), reused between reconciles.

``prepare`` checks a spec and resolves its steps: worth keeping while neither the spec
(the Pipeline's generation) nor the namespace's Tasks (counted by their events) change.
A bounded LRU, about 36 KiB a pipeline; a deleted pipeline's entries go with it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

from sluice.core.matrix import DEFAULT_MAX_MATRIX
from sluice.core.reconcile import Prepared, prepare

__all__ = ["PreparedCache"]

_KEPT = 256


class PreparedCache:
    """``prepare(body, tasks)`` by (uid, generation, the namespace's Task epoch)."""

    def __init__(self, kept: int = _KEPT, max_matrix: int = DEFAULT_MAX_MATRIX) -> None:
        self.kept = kept
        self.max_matrix = max_matrix
        self._by_key: OrderedDict[tuple[Any, ...], Prepared] = OrderedDict()

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self._by_key)

    def get(
        self, body: Mapping[str, Any], tasks: Mapping[str, Mapping[str, Any]], task_epoch: int
    ) -> Prepared | None:
        """The prepared spec; None when the body has no generation to tell changes by
        (reconcile prepares afresh then)."""
        meta = body.get("metadata") or {}
        if meta.get("generation") is None:
            return None
        key = (meta.get("uid"), meta.get("generation"), task_epoch)
        prepared = self._by_key.get(key)
        if prepared is None:
            prepared = self._by_key[key] = prepare(body, tasks, max_matrix=self.max_matrix)
            while len(self._by_key) > self.kept:
                self._by_key.popitem(last=False)
        else:
            self._by_key.move_to_end(key)
        return prepared

    def forget(self, uid: str | None) -> None:
        """Drop a deleted pipeline's entries."""
        for stale in [k for k in self._by_key if k[0] == uid]:
            del self._by_key[stale]
