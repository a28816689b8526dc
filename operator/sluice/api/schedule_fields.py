"""The fields issue 16 adds to the spec models (``api.models`` declares them one line each)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from sluice.api.schedule import HISTORY_LIMIT_DEFAULT, HISTORY_LIMIT_MAX, MAX_CACHE_VERSION

__all__ = ["cache_version", "history_limit", "pipeline_cache", "schedule", "step_cache"]


def cache_version() -> Any:
    """``TaskSpec.cacheVersion``."""
    return Field(
        default=None,
        max_length=MAX_CACHE_VERSION,
        description="Part of the cache key: bump it to invalidate the cached results.",
    )


def step_cache() -> Any:
    """``PipelineTask.cache``."""
    return Field(default=None, description="Cache policy of this step; replaces the pipeline's.")


def pipeline_cache() -> Any:
    """``PipelineSpec.cache``."""
    return Field(default=None, description="Cache policy of every step that sets none itself.")


def schedule() -> Any:
    """``PipelineSpec.schedule``."""
    return Field(default=None, description="Start a new run on a clock (suspend pauses it too).")


def history_limit() -> Any:
    """``PipelineSpec.historyLimit``: optional, so that dumps of old specs do not change."""
    return Field(
        default=None,
        ge=0,
        le=HISTORY_LIMIT_MAX,
        description=f"How many runs status.history keeps, newest first (default "
        f"{HISTORY_LIMIT_DEFAULT}, at most {HISTORY_LIMIT_MAX}).",
    )
