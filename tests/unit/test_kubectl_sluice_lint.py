"""`kubectl sluice lint` offline: every invalid manifest of tests/corpus is flagged with the
words its header expects, every example is clean; and the plugin's errors without a
cluster are one sentence, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sluice.kubectl_sluice.lint import lint

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted((ROOT / "tests" / "corpus").glob("*.yaml"))
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def _expect(path: Path) -> str:
    line = next(x for x in path.read_text().splitlines() if x.startswith("# expect: "))
    return line.removeprefix("# expect: ")


def _fragments(expect: str) -> list[str]:
    """The expectation without the prefixes lint shows as the location instead."""
    text = expect.removeprefix("Invalid task: ").removeprefix("Invalid pipeline: ")
    out = []
    for part in text.split("; "):
        if part.startswith('task "') and '": ' in part:
            part = part.split('": ', 1)[1]
        out.append(part)
    return out


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_lint_flags_every_corpus_case_with_the_words_it_expects(path: Path) -> None:
    result = lint([path])

    assert not result.ok
    shown = [str(p) for p in result.problems if p.severity == "error"]
    for fragment in _fragments(_expect(path)):
        assert any(fragment in line for line in shown), (fragment, shown)


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_the_layer_a_corpus_case_names_is_the_one_that_flags_it(path: Path) -> None:
    layer = next(x for x in path.read_text().splitlines() if x.startswith("# layer: "))[9:]
    messages = [p.message for p in lint([path]).problems]
    # The schema and CEL speak of paths in the object, as the API server does.
    from_schema = [m for m in messages if m.startswith(('unknown field "', "spec", "metadata"))]
    if layer in ("schema", "cel"):
        assert from_schema, messages
    else:
        assert not from_schema, messages


def test_every_example_is_clean() -> None:
    result = lint(EXAMPLES)

    assert result.ok
    assert result.problems == []  # fan-out, schedules and caching run: nothing to warn of
    assert result.objects >= 3


def test_problems_read_file_step_message(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": "Pipeline",
                "metadata": {"name": "p"},
                "spec": {
                    "tasks": [
                        {"name": "load", "task": {"image": "busybox"}},
                        {"name": "b", "dependsOn": ["laod"], "task": {"image": "busybox"}},
                        {"name": "c", "task": {"image": "busybox"}, "dependOn": ["load"]},
                    ]
                },
            }
        )
    )
    lines = [str(p) for p in lint([f]).problems]
    assert lines == [f'{f}:c: unknown field "spec.tasks[2].dependOn"']
    # Once the schema admits it, the webhook's checks speak.
    text = f.read_text().replace("dependOn", "dependsOn")
    f.write_text(text)
    lines = [str(p) for p in lint([f]).problems]
    assert lines == [f'{f}:b: task "b" depends on unknown task "laod" (did you mean "load"?)']


def test_a_missing_task_is_a_warning_and_a_task_in_the_files_is_checked(tmp_path: Path) -> None:
    pipeline = {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": "p"},
        "spec": {
            "tasks": [
                {"name": "a", "taskRef": {"name": "t"}},
                {"name": "b", "taskRef": {"name": "missing"}},
            ]
        },
    }
    task = {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Task",
        "metadata": {"name": "t"},
        "spec": {"image": "busybox", "params": [{"name": "dataset"}]},
    }
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump_all([pipeline, task]))
    result = lint([f])
    assert result.ok  # both are external: the webhook warns, kubectl apply goes on
    text = [str(p) for p in result.problems]
    assert f'{f}:a: warning: no value for parameter "dataset"' in text
    assert any(t.startswith(f"{f}:b: warning: ") and "does not exist" in t for t in text)


def test_unreadable_input_is_flagged_not_raised(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Pipeline\nspec: [unclosed\n")
    result = lint([bad, tmp_path / "absent.yaml"])
    assert not result.ok
    assert [p.message.split(":")[0] for p in result.problems] == ["not valid YAML", "no such file"]


def _plugin(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice.kubectl_sluice", *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **(env or {})},
        timeout=60,
    )


def test_lint_exits_non_zero_on_an_invalid_pipeline_and_zero_on_the_examples() -> None:
    bad = _plugin("lint", str(ROOT / "tests" / "corpus" / "webhook-cycle-two.yaml"))
    assert bad.returncode == 1
    assert bad.stdout.endswith(": cycle: clean -> extract -> clean\n")
    good = _plugin("lint", str(ROOT / "examples"))
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout == ""
    assert "valid" in good.stderr


def test_user_errors_are_one_sentence_without_a_traceback(tmp_path: Path) -> None:
    dead = tmp_path / "kubeconfig"
    dead.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "x"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    cases = [
        (("get", "p", "--kubeconfig", str(dead)), "cannot reach the Kubernetes API server"),
        (("list", "--kubeconfig", str(tmp_path / "nope")), "does not exist"),
        (("get", "p", "--kubeconfig", str(dead), "--context", "other"), 'no context "other"'),
        (("logs",), "required: pipeline"),
        (("get", "p", "--bogus"), "unrecognized arguments: --bogus"),
        (("logs", "p", "--attempt", "0"), "must be at least 1"),
        (("graph", "-f", str(tmp_path / "none.yaml")), "cannot read"),
    ]
    for args, words in cases:
        r = _plugin(*args, env={"KUBECONFIG": str(tmp_path / "unset")})
        assert r.returncode != 0, args
        assert words in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = _plugin("list", env={"KUBECONFIG": str(tmp_path / "unset")})
    assert r.returncode == 1 and "no cluster configured" in r.stderr


def test_graph_of_a_file_needs_no_cluster() -> None:
    r = _plugin("graph", "-f", str(ROOT / "examples" / "degraded-and-recovered.yaml"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "flowchart LR"
    assert "s0 --> s1" in r.stdout
    dot = _plugin("graph", "-f", str(ROOT / "examples" / "hello.yaml"), "--format", "dot")
    assert dot.returncode == 0 and dot.stdout.startswith("digraph ")
