"""The size and complexity gate (hack/check_complexity.py) names what is too big."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "hack" / "check_complexity.py"
_spec = importlib.util.spec_from_file_location("check_complexity", _PATH)
assert _spec is not None and _spec.loader is not None
gate = importlib.util.module_from_spec(_spec)
sys.modules["check_complexity"] = gate
_spec.loader.exec_module(gate)


def test_the_operator_passes_the_gate() -> None:
    assert gate.main(["check_complexity"]) == 0


def test_a_long_module_and_a_complex_function_are_named(tmp_path: Path) -> None:
    branches = "".join(f"    if x == {i}:\n        return {i}\n" for i in range(30))
    (tmp_path / "tangled.py").write_text(f"def knot(x):\n{branches}    return -1\n")
    (tmp_path / "long.py").write_text("x = 1\n" * (gate.MAX_LINES + 1))
    (tmp_path / "fine.py").write_text("def f():\n    return 1\n")
    found = gate.offences(tmp_path)
    assert len(found) == 2
    assert found[0].startswith("long.py: 421 lines")
    assert found[1].startswith("tangled.py:knot: complexity 31")
    assert gate.main(["check_complexity", str(tmp_path)]) == 1
