"""Fan-out (issue 15): a matrixed step's combinations, their params and its results.

Combination order
    The cross product of the params' values, **the first param varying slowest** (the order
    of ``itertools.product`` and of nested loops written in the params' order): with
    ``lr: ["0.1", "0.01"]`` and ``depth: ["4", "8"]``, combination 0 is (0.1, 4), 1 is
    (0.1, 8), 2 is (0.01, 4) and 3 is (0.01, 8). The index of a combination is its place in
    that order; it is part of the combination's Job names (``sluice.core.naming``), its label,
    its place in the step's result arrays and in the status's ``done`` ranges. The order
    depends only on the spec and, for ``fromResult`` params, on the producer's result: a
    restarted operator computes the same indexes.

Width
    The number of combinations, the product of the params' sizes. At most
    :data:`DEFAULT_MAX_MATRIX` unless ``sluice run --max-matrix`` says otherwise; one message
    (:func:`too_wide`) for the webhook (static matrices) and the reconciler (dynamic ones).
    A ``fromResult`` that is the empty array makes the width 0: the step is Skipped
    (:data:`EMPTY_MATRIX`), as in Tekton.

Params of a combination
    :func:`combination_params` is ``sluice.core.params.resolve`` with the combination's
    values as step values: static ``values`` may use ``$(params.X)`` of the pipeline like any
    step value; values from a result are data, inserted verbatim and never substituted.

Everything is pure; errors are :class:`InvalidMatrix` with a message naming the step.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from sluice.api import Matrix
from sluice.core import params
from sluice.core.reference_syntax import find

__all__ = [
    "DEFAULT_MAX_MATRIX",
    "EMPTY_MATRIX",
    "INVALID_MATRIX",
    "Axis",
    "InvalidMatrix",
    "axes",
    "check_width",
    "combination",
    "combination_params",
    "combinations",
    "parse_from_result",
    "parse_min_success",
    "results_array",
    "static_axes",
    "too_wide",
    "width",
]

DEFAULT_MAX_MATRIX: Final = 256
"""Combinations one step may have by default (Tekton's default too)."""
INVALID_MATRIX: Final = "InvalidMatrix"
"""The reason of a step whose matrix cannot be expanded (a bad ``fromResult`` value, a
dynamic width over the cap, ``minSuccess`` above the width)."""
EMPTY_MATRIX: Final = "EmptyMatrix"
"""The reason of a step Skipped because a ``fromResult`` param has no values."""

_MAX_QUOTED: Final = 60


def _q(value: str) -> str:
    text = value if len(value) <= _MAX_QUOTED else value[: _MAX_QUOTED - 1] + "…"
    return json.dumps(text, ensure_ascii=False)


class InvalidMatrix(ValueError):
    """A matrix that cannot be expanded; ``str()`` is the message (it names the step)."""

    reason = INVALID_MATRIX


@dataclass(frozen=True)
class Axis:
    """One param of a matrix with its values; ``literal``: they came from a result (data)."""

    name: str
    values: tuple[str, ...]
    literal: bool = False


def too_wide(step: str, count: int, cap: int) -> str:
    """The one message for a matrix over the cap, at apply time and at run time."""
    return (
        f"task {_q(step)}: the matrix has {count} combinations, more than the cap of {cap} "
        "(sluice run --max-matrix)"
    )


def width(axes_: Sequence[Axis]) -> int:
    """Number of combinations: the product of the params' sizes (1 for no params)."""
    return math.prod(len(a.values) for a in axes_)


def check_width(step: str, axes_: Sequence[Axis], cap: int = DEFAULT_MAX_MATRIX) -> int:
    """The width, or :class:`InvalidMatrix` (:func:`too_wide`) when it is over ``cap``."""
    n = width(axes_)
    if n > cap:
        raise InvalidMatrix(too_wide(step, n, cap))
    return n


def combination(axes_: Sequence[Axis], index: int) -> dict[str, str]:
    """The params of combination ``index`` (module docstring's order), in O(params)."""
    n = width(axes_)
    if not 0 <= index < n:
        raise IndexError(f"combination {index} of {n}")
    out: dict[str, str] = {}
    for axis in reversed(axes_):  # the last param varies fastest
        index, i = divmod(index, len(axis.values))
        out[axis.name] = axis.values[i]
    return {a.name: out[a.name] for a in axes_}


def combinations(axes_: Sequence[Axis]) -> Iterator[dict[str, str]]:
    """Every combination, in order."""
    for index in range(width(axes_)):
        yield combination(axes_, index)


def parse_from_result(step: str, param: str, ref: str, value: str | Sequence[str]) -> list[str]:
    """The values a ``fromResult`` param takes from its producer's result.

    ``value`` is the result: a JSON array of strings as text, or already a list (the result
    of a matrixed producer). Anything else raises :class:`InvalidMatrix` saying what the
    value was and what was expected.
    """
    where = f"task {_q(step)}: matrix param {_q(param)} takes its values from {ref}"
    if not isinstance(value, str):
        return [str(v) for v in value]
    try:
        data = json.loads(value)
    except ValueError:
        raise InvalidMatrix(
            f"{where}, which is {_q(value)}: not JSON (expected an array of strings, "
            'e.g. ["a","b"])'
        ) from None
    if not isinstance(data, list):
        kind = "an object" if isinstance(data, dict) else f"{type(data).__name__} {_q(value)}"
        raise InvalidMatrix(f"{where}, which is {kind}: expected a JSON array of strings")
    for i, item in enumerate(data):
        if not isinstance(item, str):
            raise InvalidMatrix(
                f"{where}: item {i} is {_q(json.dumps(item))}, not a string "
                '(expected a JSON array of strings, e.g. ["1","2"])'
            )
    return data


def static_axes(matrix: Matrix) -> list[Axis] | None:
    """The axes when every param lists its values; None when one takes them from a result."""
    if any(p.values is None for p in matrix.params):
        return None
    return [Axis(p.name, tuple(p.values or ())) for p in matrix.params]


def axes(
    step: str,
    matrix: Matrix,
    results: Mapping[str, Mapping[str, str | Sequence[str]]],
) -> list[Axis]:
    """The axes of ``matrix`` once its producers' results are known (``results`` by step).

    Raises :class:`InvalidMatrix` for a value that is no JSON array of strings, and
    ``KeyError`` (naming the reference) for a result not there yet: the caller waits for
    the producer, which validation made a dependency.
    """
    out: list[Axis] = []
    for p in matrix.params:
        if p.values is not None:
            out.append(Axis(p.name, tuple(p.values)))
            continue
        (ref,) = find(p.from_result or "")
        value = results.get(ref.step, {}).get(ref.name)
        if value is None:
            raise KeyError(ref.text)
        out.append(Axis(p.name, tuple(parse_from_result(step, p.name, ref.text, value)), True))
    return out


def combination_params(
    declared: Sequence[tuple[str, str | None]],
    step_values: Mapping[str, str],
    pipeline_values: Mapping[str, str],
    axes_: Sequence[Axis],
    index: int,
) -> dict[str, str]:
    """The values of the Task's params for combination ``index``: ``params.resolve`` with the
    combination's static values as step values (they win over the step's own, which
    validation refuses anyway), then the values from results, verbatim.

    Raises ``params.MissingParamError`` as ``resolve`` does. Values from results are a
    container's output: whoever puts them in kubelet-expanded fields doubles their ``$``
    (``references.kubelet_escape``), as for results.
    """
    combo = combination(axes_, index)
    literal = {a.name for a in axes_ if a.literal}
    static = {k: v for k, v in combo.items() if k not in literal}
    rest = [(n, d) for n, d in declared if n not in literal]
    out = params.resolve(rest, {**step_values, **static}, pipeline_values)
    out.update((n, combo[n]) for n, _ in declared if n in literal)
    return out


def parse_min_success(step: str, value: int | str | None, width_: int) -> int:
    """Combinations that must succeed: all by default, a count, or a percentage of the width
    rounded up (``"90%"`` of 11 is 10). :class:`InvalidMatrix` when it is above the width
    (or not a count or percentage at all: the schema refuses that first)."""
    if value is None:
        return width_
    where = f"task {_q(step)}: matrix.minSuccess"
    if isinstance(value, bool):
        raise InvalidMatrix(f'{where} must be a count or a percentage such as "90%"')
    if isinstance(value, int):
        count = value
    else:
        text = value.strip()
        digits = text.removesuffix("%")
        if not text.endswith("%") or not digits.isdecimal() or not 1 <= int(digits) <= 100:
            raise InvalidMatrix(f"{where} is {_q(value)}: expected a count or 1% to 100%")
        return math.ceil(width_ * int(digits) / 100)
    if count < 1:
        raise InvalidMatrix(f"{where} is {count}: expected at least 1")
    if count > width_:
        raise InvalidMatrix(f"{where} ({count}) is more than the matrix's {width_} combinations")
    return count


def results_array(
    declared: Sequence[str], per_combination: Sequence[Mapping[str, str] | None]
) -> dict[str, list[str]]:
    """A matrixed step's results: per declared name, the values in combination order.

    ``per_combination[i]`` holds combination ``i``'s results, or None when it did not
    succeed (tolerated by ``minSuccess``): its place holds ``""``, so every array stays
    aligned with the combination indexes (``select-best`` can map the best back).
    """
    return {
        name: [(r or {}).get(name, "") if r is not None else "" for r in per_combination]
        for name in declared
    }
