"""One retry policy for everything the shell retries (reconciles, status writes, watches)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BACKOFF", "Backoff"]


@dataclass(frozen=True)
class Backoff:
    """Seconds to wait before retry ``n`` (0-based): the steps, then the last one forever."""

    steps: tuple[float, ...] = (0.5, 1, 2, 5, 10, 30)

    def delay(self, failures: int) -> float:
        return self.steps[min(max(failures, 0), len(self.steps) - 1)]


BACKOFF = Backoff()
