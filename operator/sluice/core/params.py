"""``$(params.NAME)`` substitution in a Task's command, args and env.

Substitution is a single pass: a value is inserted verbatim and never
scanned again, so a parameter whose value happens to contain
``$(params.other)`` cannot pull in other values (or loop).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from sluice.k8s.syntax import PARAM_NAME_PATTERN

__all__ = [
    "PARAM_REF",
    "MissingParamError",
    "referenced_params",
    "resolve",
    "substitute",
    "undeclared",
]

PARAM_REF = re.compile(r"\$\(params\.(" + PARAM_NAME_PATTERN[1:-1] + r")\)")
"""A reference ``$(params.NAME)``; group 1 is NAME."""


class MissingParamError(KeyError):
    """Parameters were referenced or declared but have no value.

    A KeyError so callers treating params as a mapping can catch it as one;
    ``names`` holds every missing name, sorted, so one error reports them all.
    """

    def __init__(self, names: Iterable[str]) -> None:
        self.names: tuple[str, ...] = tuple(sorted(set(names)))
        quoted = ", ".join(f'"{n}"' for n in self.names)
        plural = "s" if len(self.names) != 1 else ""
        self.message = f"no value for parameter{plural} {quoted}"
        super().__init__(self.names)  # args that rebuild the error (pickling)

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the message, adding quotes.
        return self.message


def referenced_params(text: str) -> set[str]:
    """Names of all parameters ``text`` refers to."""
    return set(PARAM_REF.findall(text))


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace every ``$(params.NAME)`` in ``text`` with ``values[NAME]``.

    Raises :class:`MissingParamError` naming every reference without a value
    (before substituting anything, so the error is complete).
    """
    missing = referenced_params(text) - values.keys()
    if missing:
        raise MissingParamError(missing)
    return PARAM_REF.sub(lambda m: values[m.group(1)], text)


def resolve(
    declared: Sequence[tuple[str, str | None]],
    step_values: Mapping[str, str],
    pipeline_values: Mapping[str, str],
) -> dict[str, str]:
    """Values of a Task's declared ``(name, default)`` params for one step.

    Precedence: the pipeline step's value (in which ``$(params.x)`` refers to
    pipeline params), then the pipeline param of the same name, then the
    Task's default. Raises :class:`MissingParamError` listing every param
    without a value and every unknown pipeline param a step value refers to.
    Step values for undeclared names are ignored here; see :func:`undeclared`.
    """
    result: dict[str, str] = {}
    missing: set[str] = set()
    for name, default in declared:
        if name in step_values:
            try:
                result[name] = substitute(step_values[name], pipeline_values)
            except MissingParamError as err:
                missing.update(err.names)
        elif name in pipeline_values:
            result[name] = pipeline_values[name]
        elif default is not None:
            result[name] = default
        else:
            missing.add(name)
    if missing:
        raise MissingParamError(missing)
    return result


def undeclared(declared_names: Iterable[str], step_values: Mapping[str, str]) -> list[str]:
    """Sorted names a step sets that its Task does not declare (likely typos)."""
    return sorted(step_values.keys() - set(declared_names))
