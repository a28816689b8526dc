"""`sluice run` that cannot start says why in one line, without a traceback (issue 19)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

FAKE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
"""


def _sluice(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    return subprocess.run(
        [sys.executable, "-m", "sluice", "run", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_without_a_kubeconfig_it_dies_with_one_line(tmp_path: Path) -> None:
    r = _sluice({"KUBECONFIG": str(tmp_path / "missing")})
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("sluice: no Kubernetes configuration")
    assert "Traceback" not in r.stderr


def test_with_its_health_port_taken_it_dies_with_one_line(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(FAKE_KUBECONFIG)
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = _sluice(
            {"KUBECONFIG": str(kubeconfig)}, "--health-port", str(port), "--metrics-port", "0"
        )
    assert r.returncode == 1
    assert r.stderr == f"sluice: cannot listen on the health port {port}: Address already in use\n"
