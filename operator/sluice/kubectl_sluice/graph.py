"""``kubectl sluice graph``: a pipeline's DAG, with its phases, as Graphviz or Mermaid text
(pure; re-exported by :mod:`sluice.kubectl_sluice.render`)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Final

from sluice.kubectl_sluice.model import PipelineView
from sluice.kubectl_sluice.style import _SYMBOLS

__all__ = ["to_dot", "to_mermaid", "without_status"]

_DOT_FILL: Final = {
    "Succeeded": "#c8e6c9",
    "Running": "#bbdefb",
    "Retrying": "#fff3c4",
    "Pending": "#eeeeee",
    "Failed": "#ffcdd2",
    "Blocked": "#e1bee7",
    "Skipped": "#f5f5f5",
}


def _with_phases(v: PipelineView) -> bool:
    return v.seen


def to_dot(v: PipelineView) -> str:
    """Graphviz: ``kubectl sluice graph X --format dot | dot -Tsvg > x.svg``."""
    lines = [f"digraph {json.dumps(v.name or 'pipeline')} {{", "  rankdir=LR;"]
    lines.append('  node [shape=box, style="rounded,filled", fontname="Helvetica"];')
    for s in v.steps:
        label = f"{s.name}\\n{s.phase}" if _with_phases(v) else s.name
        fill = _DOT_FILL.get(s.phase, "#eeeeee") if _with_phases(v) else "#ffffff"
        dashed = ', style="rounded,filled,dashed"' if s.final else ""
        lines.append(f'  {json.dumps(s.name)} [label="{label}", fillcolor="{fill}"{dashed}];')
    known = {s.name for s in v.steps}
    for s in v.steps:
        for d in s.depends_on:
            if d in known:
                lines.append(f"  {json.dumps(d)} -> {json.dumps(s.name)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


_MERMAID_CLASS: Final = {
    "Succeeded": "fill:#c8e6c9,stroke:#2e7d32",
    "Running": "fill:#bbdefb,stroke:#1565c0",
    "Retrying": "fill:#fff3c4,stroke:#f9a825",
    "Pending": "fill:#eeeeee,stroke:#9e9e9e",
    "Failed": "fill:#ffcdd2,stroke:#c62828",
    "Blocked": "fill:#e1bee7,stroke:#6a1b9a",
    "Skipped": "fill:#f5f5f5,stroke:#bdbdbd",
}


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;")


def to_mermaid(v: PipelineView) -> str:
    """Mermaid (renders in GitHub Markdown inside a ```mermaid block)."""
    ids = {s.name: f"s{i}" for i, s in enumerate(v.steps)}
    lines = ["flowchart LR"]
    used: set[str] = set()
    for s in v.steps:
        if _with_phases(v):
            label = f"{_SYMBOLS.get(s.phase, '')} {s.name}<br/>{s.phase}"
            cls = s.phase.lower()
            used.add(s.phase)
            lines.append(f'  {ids[s.name]}["{_mermaid_text(label)}"]:::{cls}')
        else:
            lines.append(f'  {ids[s.name]}["{_mermaid_text(s.name)}"]')
    for s in v.steps:
        for d in s.depends_on:
            if d in ids:
                lines.append(f"  {ids[d]} --> {ids[s.name]}")
    for phase in sorted(used):
        lines.append(f"  classDef {phase.lower()} {_MERMAID_CLASS.get(phase, '')}")
    return "\n".join(lines) + "\n"


def without_status(v: PipelineView) -> PipelineView:
    return replace(v, phase=None)
