"""The syntax of references between steps: :data:`REF`, :data:`ANY_REF`, :class:`Ref`,
:func:`find` and :func:`has_malformed`.

Their home is here so that :mod:`sluice.core.references` (which re-exports every public
name, the place to import them from) stays within the size gate; see that module for what
references mean and who may use them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["ANY_REF", "REF", "Ref", "find", "has_malformed", "ref_of"]

_LABEL: Final = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
"""A DNS label: what a step name and a result name are."""

REF: Final = re.compile(
    rf"\$\(tasks\.(?:(?P<run>status)|(?P<step>{_LABEL})\.(?:(?P<status>status)|results\.(?P<result>{_LABEL})))\)"
)
"""``$(tasks.status)``, ``$(tasks.STEP.status)`` or ``$(tasks.STEP.results.NAME)``."""

ANY_REF: Final = re.compile(
    rf"\$\((?:params\.(?P<param>[A-Za-z_][A-Za-z0-9_.-]*)|tasks\.(?:(?P<run>status)|"
    rf"(?P<step>{_LABEL})\.(?:(?P<status>status)|results\.(?P<result>{_LABEL}))))\)"
)
"""A reference :func:`sluice.core.references.substitute` replaces: :data:`REF` or
``$(params.NAME)`` (the grammar of ``sluice.core.params.PARAM_REF``)."""

_TASKS_START: Final = "$(tasks."

RefKind = Literal["param", "phase", "result", "status", "run-status"]


@dataclass(frozen=True, order=True)
class Ref:
    """One reference: to a step's result or status, or the run's status; and, in a ``when``
    only, to a pipeline param or a step's phase (CEL variables ``params.NAME`` and
    ``tasks.STEP.phase``; text fields have ``$(params.NAME)`` from ``sluice.core.params``)."""

    kind: RefKind
    step: str = ""
    """The producer (empty for the run's status and for params)."""
    name: str = ""
    """The result's or the param's name."""

    @staticmethod
    def param(name: str) -> Ref:
        return Ref("param", name=name)

    @staticmethod
    def phase(step: str) -> Ref:
        return Ref("phase", step)

    @staticmethod
    def result(step: str, name: str) -> Ref:
        return Ref("result", step, name)

    @staticmethod
    def status(step: str) -> Ref:
        return Ref("status", step)

    @staticmethod
    def run_status() -> Ref:
        return Ref("run-status")

    @property
    def path(self) -> tuple[str, ...]:
        """Its parts: ``("tasks", "train", "results", "model-uri")``."""
        if self.kind == "param":
            return ("params", self.name)
        if self.kind == "run-status":
            return ("tasks", "status")
        if self.kind == "result":
            return ("tasks", self.step, "results", self.name)
        return ("tasks", self.step, self.kind)

    @property
    def dotted(self) -> str:
        """``tasks.train.results.model-uri``: how messages name it."""
        return ".".join(self.path)

    @property
    def text(self) -> str:
        """How it is written in a text field: ``$(tasks.train.results.model-uri)``."""
        return f"$({self.dotted})"


def ref_of(m: re.Match[str]) -> Ref:
    if m.group("run"):
        return Ref.run_status()
    if m.group("status"):
        return Ref.status(m.group("step"))
    return Ref.result(m.group("step"), m.group("result"))


def find(text: str) -> list[Ref]:
    """The references in ``text``, in order, each once."""
    if _TASKS_START not in text:
        return []  # the common case, cheaply
    return list(dict.fromkeys(ref_of(m) for m in REF.finditer(text)))


def has_malformed(text: str) -> bool:
    """Whether ``text`` has a ``$(tasks.`` that is not a reference (a likely typo, left as is:
    worth a warning such as validation gives for ``$(params.``)."""
    return text.count(_TASKS_START) > sum(1 for _ in REF.finditer(text))
