"""How ``kubectl sluice`` draws text: :class:`Style` (colour, Unicode or ASCII, width),
the colours and symbols of phases, and fitting lines to the terminal.

Re-exported by :mod:`sluice.kubectl_sluice.render`, which uses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

# ----------------------------------------------------------------------------- style

_RESET: Final = "\x1b[0m"
_COLOURS: Final = {
    "Succeeded": "\x1b[32m",  # green
    "Running": "\x1b[36m",  # cyan
    "Retrying": "\x1b[33m",  # yellow
    "Pending": "\x1b[2m",  # dim
    "Failed": "\x1b[31m",  # red
    "Degraded": "\x1b[31m",
    "Blocked": "\x1b[35m",  # magenta
    "Skipped": "\x1b[2m",
}
_BOLD: Final = "\x1b[1m"
_DIM: Final = "\x1b[2m"

_SYMBOLS: Final = {
    "Succeeded": "✔",
    "Running": "●",
    "Retrying": "↻",
    "Pending": "○",
    "Failed": "✖",
    "Degraded": "✖",
    "Blocked": "⊘",
    "Skipped": "⤼",
}
_ASCII_SYMBOLS: Final = {
    "Succeeded": "+",
    "Running": "*",
    "Retrying": "~",
    "Pending": ".",
    "Failed": "x",
    "Degraded": "x",
    "Blocked": "!",
    "Skipped": "-",
}

MAX_NAME: Final = 48
"""Widest step cell (tree prefix included) before names are shortened."""
MAX_PARENTS_SHOWN: Final = 3


@dataclass(frozen=True)
class Style:
    """How to draw: ANSI colour, Unicode symbols and lines, and a width to fit (None: any)."""

    color: bool = False
    unicode: bool = True
    width: int | None = None

    def symbol(self, phase: str) -> str:
        table = _SYMBOLS if self.unicode else _ASCII_SYMBOLS
        return table.get(phase, "?")

    def paint(self, phase: str, text: str) -> str:
        if not self.color or not text:
            return text
        code = _COLOURS.get(phase)
        return f"{code}{text}{_RESET}" if code else text

    def bold(self, text: str) -> str:
        return f"{_BOLD}{text}{_RESET}" if self.color and text else text

    def dim(self, text: str) -> str:
        return f"{_DIM}{text}{_RESET}" if self.color and text else text


PLAIN: Final = Style()
ASCII: Final = Style(unicode=False)

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def visible_len(text: str) -> int:
    return len(_ANSI.sub("", text))


def fit(line: str, width: int | None) -> str:
    """``line`` cut to ``width`` visible characters (ANSI codes kept, closed if cut)."""
    if width is None or visible_len(line) <= width:
        return line
    out: list[str] = []
    shown = 0
    i = 0
    coloured = False
    while i < len(line) and shown < width - 1:
        m = _ANSI.match(line, i)
        if m:
            out.append(m.group())
            coloured = m.group() != _RESET
            i = m.end()
            continue
        out.append(line[i])
        shown += 1
        i += 1
    out.append("…")
    if coloured:
        out.append(_RESET)
    return "".join(out)


def one_line(text: str | None) -> str:
    """A message on one line: newlines and runs of blanks become single spaces."""
    return " ".join((text or "").split())
