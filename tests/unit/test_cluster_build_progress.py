"""Issue 17's `make dev` on a fresh machine: the control-plane build shows its
progress (packages compiled, time elapsed) instead of minutes of silence. A
fake `go` prints what `go build -v` prints; the clock is the test's."""

from __future__ import annotations

import importlib.util
import itertools
import os
import stat
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]

FAKE_GO = """#!{python}
import sys, pathlib
args = sys.argv[1:]
out = pathlib.Path(args[args.index("-o") + 1])
for i in range(5):
    print(f"example.com/pkg{{i}}", flush=True)
print("# example.com/cgo", flush=True)
print("\\tnoise", flush=True)
(out / "kubectl").write_text("")
"""


def _cluster_module(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "sluice_cluster", ROOT / "hack" / "cluster" / "cluster.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look it up
    spec.loader.exec_module(module)
    return module


def test_a_cold_build_reports_packages_compiled_and_time_elapsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = _cluster_module(monkeypatch)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    go = bindir / "go"
    go.write_text(FAKE_GO.format(python=sys.executable))
    go.chmod(go.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(cluster, "CACHE", tmp_path / "cache")
    clock = itertools.count(0.0, 20.0)  # every look at the clock: 20 s later
    monkeypatch.setattr(cluster.time, "monotonic", lambda: next(clock))
    tool = cluster.Tool("kubernetes", "k8s.io/kubernetes", ("k8s.io/kubectl/cmd/kubectl",))

    cluster.build(tools=[tool])

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[cluster] building kubectl ")
    progress = [line for line in lines if "packages compiled" in line]
    # A report at most every 30 s, counting package lines only (not # or indented).
    assert progress == [
        "[cluster]   kubernetes: 2 packages compiled, 40s elapsed",
        "[cluster]   kubernetes: 4 packages compiled, 80s elapsed",
        "[cluster]   kubernetes: 5 packages compiled, 120s elapsed",  # 6 lines read, 1 "#"
    ]
    assert lines[-1].startswith("[cluster] built kubectl in ")
    assert (tool.bindir / "kubectl").exists()
