"""The seam to the CEL library (cel-expr-python, the CEL project's binding of cel-cpp).

Everything that knows the binding's particulars lives here: how a variable's name is
escaped into a CEL identifier (Kubernetes' CRD-CEL escaping: ``__dash__`` for ``-``), how a
type is named, how the variables a checked expression uses are read from its serialised
form, and how an environment is made. ``sluice.core.when`` (``when`` conditions) and
``kubectl sluice lint`` (the CRDs' CEL rules, offline) both use it.

The library (cel-cpp and its protobuf runtime, about 11 MiB resident) is imported on first
use, by :func:`new_env`: an operator, webhook or ``kubectl sluice lint`` whose pipelines
have no ``when`` never loads it. Nothing else in Sluice imports it (an import-linter
contract says so, and ``test_cel_is_loaded_lazily`` checks the start-up imports).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, Final

from sluice.core.references import Ref

__all__ = ["cel_name", "dotted", "new_env", "reference_names", "type_name"]

# CEL's reserved words (cel-spec langdef.md): not identifiers, so not field names either.
_RESERVED: Final = frozenset(
    {
        *("as", "break", "const", "continue", "else", "false", "for", "function", "if"),
        *("import", "in", "let", "loop", "package", "namespace", "null", "return", "true"),
        *("var", "void", "while"),
    }
)
_UNESCAPE: Final = re.compile(
    r"__(underscores|dash|" + "|".join(sorted(_RESERVED)) + r")__|^__(?=[0-9])", re.ASCII
)
_PLAIN: Final = re.compile(
    r"(?!(?:" + "|".join(sorted(_RESERVED)) + r")\Z)[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*",
    re.ASCII,
)
"""A name part that is its own escape: an identifier, not reserved, without ``__``, not
starting or ending with ``_`` (so it cannot be confused with an escape)."""

# ----------------------------------------------------------------------------- names


@functools.lru_cache(maxsize=4096)
def _escape_part(part: str) -> str:
    if _PLAIN.fullmatch(part) is not None:
        return part  # the common case: already an identifier
    if part in _RESERVED:
        return f"__{part}__"
    text = part.replace("__", "__underscores__").replace("-", "__dash__")
    return "__" + text if text[:1].isdigit() else text


def _unescape_part(part: str) -> str:
    def back(m: re.Match[str]) -> str:
        word = m.group(1)
        if word is None:
            return ""  # the prefix of a leading digit
        return {"underscores": "__", "dash": "-"}.get(word, word)

    return _UNESCAPE.sub(back, part)


def cel_name(ref: Ref) -> str:
    """The CEL identifier of a variable: ``tasks.my__dash__step.results.auc``.

    Each part is escaped on its own; a param's name keeps its dots (``params.a.b`` is a
    qualified name in CEL too)."""
    parts = [p for part in ref.path for p in part.split(".")]
    return ".".join(_escape_part(p) for p in parts)


_cel_name = functools.lru_cache(maxsize=8192)(cel_name)


def dotted(name: str) -> str:
    """A CEL name as the user would write it (escapes undone)."""
    return ".".join(_unescape_part(p) for p in name.split("."))


STRING: Final = "string"
STRINGS: Final = "list(string)"
DYN: Final = "dyn"
"""The variables' types :func:`new_env` declares (the binding's ``cel.Type`` by name)."""


@functools.cache
def _library() -> Any:
    """The binding's ``cel`` module and extensions, imported on the first call."""
    from cel_expr_python import cel  # type: ignore[import-untyped]
    from cel_expr_python.ext import ext_math, ext_strings  # type: ignore[import-untyped]

    types = {
        STRING: cel.Type.STRING,
        STRINGS: cel.Type.List(cel.Type.STRING),
        DYN: cel.Type.DYN,
    }
    return cel, types, ext_math, ext_strings


def new_env(variables: Mapping[str, str], *, math: bool = True) -> Any:
    """A CEL environment declaring ``variables`` (name -> :data:`STRING`, :data:`STRINGS`
    or :data:`DYN`), with the strings extension (and the math one unless ``math`` is
    False). The first call imports the library."""
    cel, types, ext_math, ext_strings = _library()
    extensions = [ext_strings.ExtStrings(), *([ext_math.ExtMath()] if math else [])]
    declared = {name: types[kind] for name, kind in variables.items()}
    return cel.NewEnv(variables=declared, extensions=extensions)


# The binding prefixes its messages with a status code ("INVALID_ARGUMENT: ...").
_STATUS_PREFIX: Final = re.compile(r"^[A-Z_]+: ")


def type_name(t: Any) -> str:
    try:
        return str(t.name())
    except Exception:
        return "DYN"


# The checked expression's reference map, from its serialised form: a google.protobuf.Any
# holding a cel.expr.CheckedExpr, whose field 2 maps expression ids to References (field
# 1: the name; field 3: overload ids, which only functions have). The binding exposes no
# other view of it; the protobuf wire format is stable, and test_when pins this reading.


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def _fields(data: bytes) -> list[tuple[int, bytes | int]]:
    out: list[tuple[int, bytes | int]] = []
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
            out.append((number, value))
        elif wire == 2:
            size, i = _varint(data, i)
            out.append((number, data[i : i + size]))
            i += size
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"wire type {wire}")
    return out


def reference_names(blob: bytes) -> set[str]:
    """Names of the variables (not functions) a serialised CheckedExpr refers to."""
    try:
        fields = dict(_fields(blob))  # Any: 1 type_url, 2 value
        checked = fields.get(2)
        if not isinstance(checked, bytes):
            return set()
        names: set[str] = set()
        for number, entry in _fields(checked):
            if number != 2 or not isinstance(entry, bytes):
                continue
            reference = dict(_fields(entry)).get(2)
            if not isinstance(reference, bytes):
                continue
            ref_fields = _fields(reference)
            if any(n == 3 for n, _ in ref_fields):
                continue  # a function's overloads
            name = next((v for n, v in ref_fields if n == 1), None)
            if isinstance(name, bytes):
                names.add(name.decode("utf-8", "replace"))
        return names
    except (ValueError, IndexError):
        return set()
