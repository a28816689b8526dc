"""References between steps: ``$(tasks.STEP.results.NAME)``, ``$(tasks.STEP.status)``
and ``$(tasks.status)``.

Where they appear
    In a step's ``params`` values and its (inline) task's ``command``, ``args`` and ``env``
    values, and in its ``when`` (:mod:`sluice.core.when`, where they are CEL variables, not
    text). :func:`find` reads them from a text; :func:`check` says what is wrong with them;
    :func:`implicit_dependencies` turns them into ``dependsOn`` edges (a step that uses a
    producer's results runs after it, as in Tekton: no need to repeat it in ``dependsOn``).

Substitution
    :func:`substitute` replaces ``$(params.NAME)`` and these references in **one pass**, the
    convention of :mod:`sluice.core.params`: a value is inserted verbatim and never scanned
    again, so a result that happens to contain ``$(params.token)`` or
    ``$(tasks.other.results.x)`` cannot pull in anything else. Results are data a container
    wrote, so in the fields the kubelet expands (``command``, ``args``, ``env`` values expand
    ``$(VAR)``, with ``$$`` for a literal ``$``) their ``$`` are doubled (``kubelet=True``):
    the container receives the result exactly as it was written, never an expansion of it.

Who may refer to what
    * Main steps: results of other main steps. Not ``$(tasks.status)`` nor
      ``$(tasks.STEP.status)`` (they only mean something once the main steps settled), and
      nothing of a finally step (finally steps run after the main steps).
    * Finally steps: results of main steps and of other finally steps,
      ``$(tasks.STEP.status)`` of main steps, and ``$(tasks.status)``.

Everything is pure and total; names in messages are quoted like
``sluice.core.validation`` quotes them.
"""

from __future__ import annotations

import difflib
import itertools
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from sluice.core import dag
from sluice.core.reference_syntax import ANY_REF, REF, Ref, find, has_malformed
from sluice.core.reference_syntax import ref_of as _ref

__all__ = [
    "ANY_REF",
    "REF",
    "MissingValueError",
    "Problem",
    "Ref",
    "check",
    "find",
    "format_cycle",
    "has_malformed",
    "implicit_dependencies",
    "iter_texts",
    "kubelet_escape",
    "merged_dependencies",
    "reference_cycle",
    "result_text",
    "step_refs",
    "substitute",
]

# ----------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class Problem:
    """What is wrong, for one step; ``message`` names the step (``task "x": ...``)."""

    step: str | None
    """The step it stops; None for the pipeline as a whole (a cycle)."""
    message: str
    severity: Literal["error", "warning"] = "error"
    external: bool = False
    """It depends on a Task object that may be applied or changed later (the webhook turns
    it into a warning, the operator fails the step), as ``validation.Finding.external``."""


def _q(name: str) -> str:
    return json.dumps(name if len(name) <= 60 else name[:59] + "…", ensure_ascii=False)


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.75)
    return f" (did you mean {_q(match[0])}?)" if match else ""


def _depends_on_problems(
    step: str, deps: Iterable[str], is_main: set[str], is_finally: set[str]
) -> list[Problem]:
    """The dependsOn rules: main steps cannot wait for finally ones, nor finally for main."""
    where_step = f"task {_q(step)}"
    in_finally = step in is_finally
    out: list[Problem] = []
    for dep in deps:
        if not in_finally and dep in is_finally:
            out.append(
                Problem(
                    step,
                    f"{where_step} depends on finally task {_q(dep)}: finally tasks run "
                    "after all the main tasks, so no main task can wait for one",
                )
            )
        elif in_finally and dep in is_main:
            out.append(
                Problem(
                    step,
                    f"{where_step} is a finally task and depends on main task {_q(dep)}: "
                    "finally tasks start once every main task has settled, so dependsOn "
                    "may only name other finally tasks",
                )
            )
    return out


def check(
    *,
    main: Sequence[str],
    finally_: Sequence[str] = (),
    refs: Mapping[str, Iterable[tuple[str, Ref]]],
    results: Mapping[str, Sequence[str] | None],
    external: Mapping[str, bool] | None = None,
    depends_on: Mapping[str, Sequence[str]] | None = None,
) -> list[Problem]:
    """Everything wrong with the references of a pipeline, in step order.

    ``main`` and ``finally_`` are the step names in declared order; ``refs`` maps a step
    to its ``(where, ref)`` pairs (``where`` names the field, e.g. ``args[1]`` or ``when``);
    ``results`` maps a step to the result names its task declares, or None when its Task
    is not known (then its results are not checked); ``external[step]`` says the producer's
    results come from a Task object (a problem with them is external). ``depends_on`` (the
    explicit edges, finally steps included) adds the dependsOn rules: a main step cannot
    depend on a finally step, a finally step only on other finally steps.

    Cycles are :func:`reference_cycle`'s (they need the whole graph).
    """
    is_main = set(main)
    is_finally = set(finally_)
    out: list[Problem] = []
    for step in [*main, *finally_]:
        where_step = f"task {_q(step)}"
        in_finally = step in is_finally
        out.extend(
            _depends_on_problems(step, (depends_on or {}).get(step, ()), is_main, is_finally)
        )
        for where, ref in refs.get(step, ()):
            at = f"{where_step}: {where} uses {ref.text}"
            if ref.kind == "run-status":
                if not in_finally:
                    out.append(
                        Problem(
                            step,
                            f"{at}, which only finally tasks can use (it is the outcome of "
                            "the main tasks)",
                        )
                    )
                continue
            if ref.kind == "param":
                continue  # the CEL checker and validation's params checks see to these
            producer = ref.step
            if producer == step:
                out.append(Problem(step, f"{at}: a task cannot refer to itself"))
                continue
            if producer not in is_main and producer not in is_finally:
                out.append(
                    Problem(
                        step,
                        f"{at}, but there is no task {_q(producer)}"
                        + _did_you_mean(producer, [*main, *finally_]),
                    )
                )
                continue
            if ref.kind == "status":
                if not in_finally:
                    out.append(
                        Problem(
                            step,
                            f"{at}, which only finally tasks can use (a task's status is "
                            "known once the main tasks have settled)",
                        )
                    )
                elif producer in is_finally:
                    out.append(
                        Problem(
                            step,
                            f"{at}, but {_q(producer)} is a finally task: $(tasks.NAME.status) "
                            "is the status of a main task",
                        )
                    )
                continue
            if not in_finally and producer in is_finally:
                out.append(
                    Problem(
                        step,
                        f"{at}, but {_q(producer)} is a finally task: finally tasks run after "
                        "all the main tasks, so no main task can refer to one",
                    )
                )
                continue
            declared = results.get(producer)
            if ref.kind == "result" and declared is not None and ref.name not in declared:
                listed = ", ".join(_q(n) for n in declared[:8]) + (
                    ", ..." if len(declared) > 8 else ""
                )
                out.append(
                    Problem(
                        step,
                        f"{at}, but task {_q(producer)} declares no result {_q(ref.name)}"
                        + (f" (it declares {listed})" if declared else " (it declares none)")
                        + _did_you_mean(ref.name, declared),
                        external=bool((external or {}).get(producer)),
                    )
                )
    return out


# ----------------------------------------------------------------------------- graph


def implicit_dependencies(refs: Mapping[str, Iterable[Ref]]) -> dict[str, list[str]]:
    """The producers each step refers to (results or status), in order of first use.

    ``$(tasks.status)`` names no step (a finally step waits for all main steps anyway); a
    step's reference to itself is no edge (:func:`check` reports it).
    """
    out: dict[str, list[str]] = {}
    for step, step_refs in refs.items():
        producers = [r.step for r in step_refs if r.step and r.step != step]
        out[step] = list(dict.fromkeys(producers))
    return out


def merged_dependencies(
    explicit: Mapping[str, Sequence[str]], implicit: Mapping[str, Sequence[str]]
) -> dict[str, list[str]]:
    """``dependsOn`` plus the implicit edges, in the steps' order (that of ``explicit``), each
    edge once: the graph the scheduler and ``sluice.core.dag`` work on."""
    return {
        step: list(dict.fromkeys([*deps, *implicit.get(step, ())]))
        for step, deps in explicit.items()
    }


def reference_cycle(
    explicit: Mapping[str, Sequence[str]], implicit: Mapping[str, Sequence[str]]
) -> tuple[list[str], list[tuple[str, str]]] | None:
    """A cycle that only exists through references: ``(cycle, implicit edges in it)``.

    None when there is none, or when ``dependsOn`` alone already has a cycle (validation
    reports that one). The cycle is :func:`sluice.core.dag.find_cycle`'s (``[a, b, a]``: a
    depends on b, b on a); the edges are the ``(step, producer)`` pairs of the cycle that
    come from references and not from ``dependsOn``.
    """
    if dag.find_cycle(explicit) is not None:
        return None
    merged = merged_dependencies(explicit, implicit)
    cycle = dag.find_cycle(merged)
    if cycle is None:
        return None
    edges = [
        (a, b)
        for a, b in itertools.pairwise(cycle)
        if b not in explicit.get(a, ()) and b in implicit.get(a, ())
    ]
    return cycle, edges


def format_cycle(cycle: Sequence[str], edges: Sequence[tuple[str, str]]) -> str:
    """``cycle: train -> evaluate -> train ("train" refers to "evaluate")``."""
    text = f"cycle: {dag.format_cycle(cycle)}"
    if edges:
        text += " (" + "; ".join(f"{_q(a)} refers to {_q(b)}" for a, b in edges) + ")"
    return text


# ----------------------------------------------------------------------------- substitution


class MissingValueError(KeyError):
    """References without a value; ``refs`` holds every one (sorted), like
    ``sluice.core.params.MissingParamError`` does for params."""

    def __init__(self, refs: Iterable[str]) -> None:
        self.refs: tuple[str, ...] = tuple(sorted(set(refs)))
        self.message = "no value for " + ", ".join(self.refs)
        super().__init__(self.refs)

    def __str__(self) -> str:
        return self.message


def kubelet_escape(value: str) -> str:
    """``value`` as the kubelet gives it back after expanding ``$(VAR)`` (``$$`` is a ``$``)."""
    return value.replace("$", "$$")


def result_text(value: str | Sequence[str]) -> str:
    """A result as text: a string as is, a matrixed step's list of strings as a JSON array
    (``["0.91","0.88"]``, combination order)."""
    if isinstance(value, str):
        return value
    return json.dumps(list(value), ensure_ascii=False, separators=(",", ":"))


def substitute(
    text: str,
    values: Mapping[Ref, str],
    params: Mapping[str, str] | None = None,
    *,
    kubelet: bool,
) -> str:
    """Replace every reference of ``text`` with its value, in one pass.

    ``values`` holds the references' values as text (:func:`result_text`); ``params``
    the values of ``$(params.NAME)``, or None to leave those as they are (for a caller
    that substituted params already: it is then a second pass over params' values, so
    prefer passing both). ``kubelet`` doubles the ``$`` of inserted *reference* values
    (for command, args and env values; param values keep today's behaviour). Raises
    :class:`MissingValueError` naming every reference without a value, before
    substituting anything.
    """
    if "$(" not in text:
        return text
    missing: set[str] = set()
    for m in ANY_REF.finditer(text):
        param = m.group("param")
        if param is not None:
            if params is not None and param not in params:
                missing.add(f"$(params.{param})")
        elif _ref(m) not in values:
            missing.add(_ref(m).text)
    if missing:
        raise MissingValueError(missing)

    def replace(m: re.Match[str]) -> str:
        param = m.group("param")
        if param is not None:
            return m.group(0) if params is None else params[param]
        value = values[_ref(m)]
        return kubelet_escape(value) if kubelet else value

    return ANY_REF.sub(replace, text)


def iter_texts(
    command: Sequence[str] | None,
    args: Sequence[str] | None,
    env: Sequence[Mapping[str, object]] | None,
    params: Iterable[tuple[str, str]] = (),
) -> Iterator[tuple[str, str]]:
    """``(where, text)`` of every field references may appear in, named as validation
    names them (``command[0]``, ``args[2]``, ``env "MODEL"``, ``parameter "data"``)."""
    for name, value in params:
        yield f"parameter {_q(name)}", value
    for i, text in enumerate(command or ()):
        yield f"command[{i}]", text
    for i, text in enumerate(args or ()):
        yield f"args[{i}]", text
    for i, var in enumerate(env or ()):
        env_value = var.get("value")
        if isinstance(env_value, str):
            yield f"env {_q(str(var.get('name', i)))}", env_value


def step_refs(texts: Iterable[tuple[str, str]]) -> list[tuple[str, Ref]]:
    """Every ``(where, ref)`` of a step's texts (:func:`iter_texts`)."""
    return [(where, ref) for where, text in texts for ref in find(text)]
