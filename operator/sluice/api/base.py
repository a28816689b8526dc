"""The base of every model of the API, and the list annotations the schema shares.

Its own module so that the models' modules (``models``, ``matrix``, ``status``) can all
build on it without importing one another in a circle.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

__all__ = ["BY_NAME", "SET", "Model"]

# A list whose items are unique by `name`: the API server itself rejects duplicates.
BY_NAME: Final[dict[str, Any]] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["name"],
}
SET: Final[dict[str, Any]] = {"x-kubernetes-list-type": "set"}
"""A list of unique scalars."""


class Model(BaseModel):
    """camelCase on the wire like every Kubernetes API; typos are errors, not silently dropped."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
