"""`kubectl sluice` on the real control plane, as a person uses it: through kubectl's
plugin mechanism, in a real terminal (tmux) for `get -w` and `logs -f`, while the shared
operator runs pipelines that fail, retry and recover."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from support.cluster import Cluster
from support.pipelines import Sluice, sim
from support.tmux import Terminal
from support.wait import wait_for

pytestmark = pytest.mark.cluster

BUSYBOX = "busybox:1.36"
RETRY, RERUN = "sluice.dev/retry", "sluice.dev/rerun"
VENV_BIN = Path(sys.executable).parent  # holds kubectl-sluice


@pytest.fixture
def s(api_client: client.ApiClient, e2e_namespace: str) -> Sluice:
    return Sluice(api_client, e2e_namespace)


@pytest.fixture
def env(cluster: Cluster, tmp_path: Path) -> dict[str, str]:
    return {
        "KUBECONFIG": str(cluster.kubeconfig),
        "PATH": f"{cluster.bin_dir}:{VENV_BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path),
    }


def plugin(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`kubectl sluice ARGS`, found by kubectl on PATH like any plugin."""
    r = subprocess.run(
        ["kubectl", "sluice", *args],
        capture_output=True,
        text=True,
        env={**env, "NO_COLOR": "1"},
        timeout=120,
    )
    if check and r.returncode != 0:
        raise AssertionError(f"kubectl sluice {' '.join(args)} failed: {r.stdout}{r.stderr}")
    return r


def inline(name: str, *deps: str, **task: Any) -> dict[str, Any]:
    return {"name": name, "dependsOn": list(deps), "task": {"image": BUSYBOX, **task}}


def ref(name: str, task: str, *deps: str) -> dict[str, Any]:
    return {"name": name, "taskRef": {"name": task}, "dependsOn": list(deps)}


def flaky(log: str | None = None, fail: bool = True) -> dict[str, Any]:
    template = sim("fail", 3, duration="2s") if fail else sim(duration="2s")
    if log:
        template["metadata"]["annotations"]["sim.sluice.dev/log"] = log
    return {
        "image": "ghcr.io/acme/loader:2.1",
        "command": ["load", "--table", "events"],
        "retry": {"limit": 1, "backoff": {"initialSeconds": 1}},
        "podTemplate": template,
    }


def _line(screen: str, text: str) -> str:
    return next(line for line in screen.splitlines() if text in line)


def test_get_watch_shows_a_run_fail_retry_and_recover_in_place(
    s: Sluice, env: dict[str, str], e2e_namespace: str
) -> None:
    s.task("flaky", flaky())
    s.pipeline(
        "nightly",
        {"tasks": [ref("load", "flaky"), inline("publish", "load"), inline("audit")]},
    )
    with Terminal(env, width=220) as term:
        term.run(f"kubectl sluice get -w nightly -n {e2e_namespace} --keep-watching")
        screen = term.wait_text("● load", "Running", timeout=60)
        # A retry is shown as such, with when the next attempt starts.
        screen = term.wait_text("Degraded", "✖ load", "blocked by load (Failed)", "✔ audit")
        assert re.search(r"✖ load\s+Failed\s+2\s", screen), screen
        assert "exit code 3" in _line(screen, "✖ load")
        assert "└─⊘ publish" in screen
        assert screen.count("Pipeline:") == 1  # redrawn in place, not appended
        # Fix the Task: the pipeline resumes by itself, and the screen follows.
        s.task("flaky", flaky(fail=False))
        screen = term.wait_text("✔ load", "✔ publish", "Succeeded", "3/3")
        assert screen.count("Pipeline:") == 1
        assert re.search(r"✔ load\s+Succeeded\s+3\s", screen), screen
        term.keys("C-c")
        term.wait(lambda sc: sc.rstrip().endswith(("$", "#")), "the shell prompt after Ctrl-C")


def test_get_watch_without_a_terminal_prints_one_line_per_change_and_ends_when_settled(
    s: Sluice, env: dict[str, str], e2e_namespace: str
) -> None:
    s.task("flaky", flaky())
    # Suspended until the watch has shown its first view: it then sees the whole run, from
    # before the first attempt (however long the plugin takes to start).
    s.pipeline(
        "nightly", {"suspend": True, "tasks": [ref("load", "flaky"), inline("publish", "load")]}
    )
    s.wait_phase("nightly", "Pending")
    lines: list[str] = []
    with subprocess.Popen(
        ["kubectl", "sluice", "get", "-w", "nightly", "-n", e2e_namespace],
        stdout=subprocess.PIPE,
        text=True,
        env={**env, "NO_COLOR": "1"},
    ) as watching:
        assert watching.stdout is not None
        out = watching.stdout

        def read() -> None:
            for line in out:
                lines.append(line.rstrip("\n"))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        wait_for(lambda: any("load" in line for line in lines), 60, "get -w's first view")
        plugin(env, "resume", "nightly", "-n", e2e_namespace)
        assert watching.wait(120) == 0
        reader.join(10)
    changes = [line for line in lines if re.match(r"\d\d:\d\d:\d\d ", line)]
    # A retry whose Retrying status came and went within one status write is still a
    # Retrying line: the printer reads the attempt count (test_kubectl_sluice_render); and
    # attempt 1 may have been written Running, or not, before it failed.
    retried = r"step load: (Pending|Running) -> Retrying \(attempt 1\)"
    assert any(re.search(retried, c) for c in changes), lines
    assert any("step load: " in c and "-> Failed (attempt 2)" in c for c in changes), lines
    assert any("step publish: Pending -> Blocked" in c for c in changes), lines
    assert "pipeline nightly: Degraded 0/2" in changes[-1] or any(
        "pipeline nightly: Degraded" in c for c in changes
    )
    assert not any("\x1b" in line for line in lines)


def test_logs_follow_each_attempt_then_the_recovered_run(
    s: Sluice, env: dict[str, str], e2e_namespace: str
) -> None:
    ns = e2e_namespace
    s.task("flaky", flaky(log="loading 1200 events"))
    s.pipeline(
        "nightly",
        {
            "suspend": True,
            "tasks": [ref("load", "flaky"), inline("publish", "load", command=["echo", "ok"])],
        },
    )
    s.wait_phase("nightly", "Pending")
    # Nothing runs yet: a step without pods is one clear sentence, not a traceback.
    early = plugin(env, "logs", "nightly", "load", "-n", ns, check=False)
    assert early.returncode == 1
    assert (
        early.stderr
        == "error: step load has no pods yet: it is Pending (the pipeline is suspended)\n"
    )

    with Terminal(env) as one, Terminal(env) as every:
        one.run(f"kubectl sluice logs nightly load -f -n {ns}; echo EXIT=$?")
        one.wait_text("waiting for step load to start")
        every.run(f"kubectl sluice logs nightly -f -n {ns}; echo EXIT=$?")
        out = plugin(env, "resume", "nightly", "-n", ns)
        assert out.stdout.startswith("Resumed nightly")
        seen = one.wait_text("EXIT=0", whole=True)
        everything = every.wait_text("EXIT=0", whole=True)

    lines = [line for line in seen.splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if "waiting for step load" in line)
    assert lines[start + 1 : start + 8] == [
        "+ load --table events",
        "loading 1200 events",
        "sim: failing with exit code 3 (Error)",
        "--- load: attempt 1 failed (exit code 3, Error) ---",
        lines[start + 5],
        "+ load --table events",
        "loading 1200 events",
    ]
    assert lines[start + 5].startswith("--- load: attempt 2 (pod nightly-load-")
    assert "--- load: attempt 2 failed (exit code 3, Error) ---" in seen
    # Every step, each line prefixed with its step; the blocked one has none.
    assert "[load] + load --table events" in everything
    assert "[load] loading 1200 events" in everything
    assert "[publish]" not in everything.replace("[publish] ---", "")

    # The fix: the failed step runs again (attempt 3) and the pipeline recovers.
    s.task("flaky", flaky(log="loading 1200 events", fail=False))
    s.wait_phase("nightly", "Succeeded")
    r = plugin(env, "logs", "nightly", "-n", ns)
    assert r.stdout.splitlines() == [
        "[load] + load --table events",
        "[load] loading 1200 events",
        "[publish] + echo ok",
    ]
    second = plugin(env, "logs", "nightly", "load", "--attempt", "2", "-n", ns).stdout
    assert second.splitlines()[-1] == "sim: failing with exit code 3 (Error)"
    none = plugin(env, "logs", "nightly", "--failed", "-n", ns)
    assert none.stdout == "" and "No step of nightly has failed" in none.stderr


def _annotation(s: Sluice, name: str, key: str) -> str:
    return str(s.get(name)["metadata"]["annotations"][key])


def test_retry_rerun_suspend_resume_do_what_the_annotations_and_spec_do(
    s: Sluice, env: dict[str, str], e2e_namespace: str
) -> None:
    ns = e2e_namespace
    s.task("bad", {"image": BUSYBOX, "retry": {"limit": 0}, "podTemplate": sim("fail", 2)})
    s.pipeline("p", {"tasks": [ref("a", "bad"), inline("b", "a")]})
    s.wait_phase("p", "Degraded")

    def attempts() -> int:
        return int(s.task_status("p", "a").get("attempts", 0))

    def settled_with(key: str, handled: str) -> dict[str, Any] | None:
        st = s.status("p")
        ok = st.get(handled) == _annotation(s, "p", key) and st.get("finishedAt")
        return st if ok and st.get("phase") in ("Degraded", "Succeeded") else None

    # retry: one more attempt of the failed step, exactly as the annotation gives.
    out = plugin(env, "retry", "p", "-n", ns).stdout
    assert out.startswith("Retrying 1 failed step of p: a ")
    assert "Blocked until then: b." in out
    wait_for(lambda: settled_with(RETRY, "handledRetry"), what="the retry to be handled")
    assert attempts() == 2
    s.annotate("p", RETRY, "by-hand")
    wait_for(lambda: attempts() == 3 and settled_with(RETRY, "handledRetry"), what="by hand")

    # rerun: run N+1, as the annotation starts it.
    out = plugin(env, "rerun", "p", "-n", ns).stdout
    assert out.startswith("Starting run 2 of p: all 2 steps run again.")
    st = wait_for(lambda: settled_with(RERUN, "handledRerun"), what="the rerun to be handled")
    assert st["run"] == 2
    s.annotate("p", RERUN, "by-hand")
    wait_for(lambda: s.status("p").get("run") == 3, what="run 3 (by hand)")

    # suspend / resume: spec.suspend, which stops new steps from starting.
    s.wait_phase("p", "Degraded")
    out = plugin(env, "suspend", "p", "-n", ns).stdout
    assert out.startswith("Suspended p: no new steps start.")
    assert s.get("p")["spec"]["suspend"] is True
    assert "already suspended" in plugin(env, "suspend", "p", "-n", ns).stdout
    plugin(env, "rerun", "p", "-n", ns)
    st = wait_for(
        lambda: (x := s.status("p")).get("run") == 4 and x.get("phase") == "Pending" and x,
        what="run 4, suspended",
    )
    assert "Suspended" in st["message"]
    assert not [j for j in s.jobs("p") if j.metadata.labels["sluice.dev/run"] == "4"]
    shown = plugin(env, "get", "p", "-n", ns).stdout
    assert "(suspended)" in shown.splitlines()[1]
    out = plugin(env, "resume", "p", "-n", ns).stdout
    assert out.startswith("Resumed p")
    assert s.get("p")["spec"]["suspend"] is False
    wait_for(
        lambda: [j for j in s.jobs("p") if j.metadata.labels["sluice.dev/run"] == "4"],
        what="a Job of run 4 once resumed",
    )


def test_get_list_and_graph_of_a_pipeline_in_the_cluster(
    s: Sluice, env: dict[str, str], e2e_namespace: str
) -> None:
    ns = e2e_namespace
    s.pipeline(
        "diamond",
        {"tasks": [inline("a"), inline("b", "a"), inline("c", "a"), inline("d", "b", "c")]},
    )
    s.wait_phase("diamond", "Succeeded")
    out = plugin(env, "get", "diamond", "-n", ns).stdout.splitlines()
    assert out[1] == "Phase:     ✔ Succeeded"
    assert out[2] == "Progress:  4/4"
    tree = [line.split()[0:2] for line in out[out.index("") + 2 :]]
    assert tree == [["✔", "a"], ["├─✔", "b"], ["└─✔", "c"], ["✔", "d"]]
    assert "d ← b, c" in out[-1]
    as_json = plugin(env, "get", "diamond", "-n", ns, "-o", "json").stdout
    assert '"phase": "Succeeded"' in as_json
    # -o json and -o yaml are the raw status, the same one.
    as_yaml = plugin(env, "get", "diamond", "-n", ns, "-o", "yaml").stdout
    assert yaml.safe_load(as_yaml) == json.loads(as_json) == s.status("diamond")
    listed = plugin(env, "list", "-A").stdout.splitlines()
    assert listed[0].split()[:4] == ["NAMESPACE", "NAME", "PHASE", "PROGRESS"]
    assert any(line.split()[:4] == [ns, "diamond", "Succeeded", "4/4"] for line in listed)
    mermaid = plugin(env, "graph", "diamond", "-n", ns).stdout
    assert ":::succeeded" in mermaid and "s0 --> s1" in mermaid


def test_errors_a_user_can_cause_are_one_sentence(
    s: Sluice, env: dict[str, str], e2e_namespace: str
) -> None:
    ns = e2e_namespace
    s.pipeline("hello", {"tasks": [inline("say-hello")]})
    s.wait_phase("hello", "Succeeded")
    cases = [
        (("get", "nope", "-n", ns), f'error: pipeline "nope" not found in namespace "{ns}"'),
        (("logs", "hello", "say-helo", "-n", ns), 'has no step "say-helo" (did you mean'),
        (("retry", "nope", "-n", ns), "not found"),
        (("get", "hello", "-n", ns, "--context", "nope"), 'no context "nope"'),
    ]
    for args, words in cases:
        r = plugin(env, *args, check=False)
        assert r.returncode != 0, args
        assert words in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    # KUBECONFIG is honoured, and so is the context's namespace.
    kubeconfig = Path(env["HOME"]) / "config"
    text = Path(env["KUBECONFIG"]).read_text()
    kubeconfig.write_text(
        text.replace(
            "context: {cluster: sluice-local,",
            f"context: {{namespace: {ns}, cluster: sluice-local,",
        )
    )
    r = plugin({**env, "KUBECONFIG": str(kubeconfig)}, "get", "hello")
    assert "Phase:     ✔ Succeeded" in r.stdout
