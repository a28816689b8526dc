"""Run the real operator (`python -m sluice run`) as a child process in tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from support.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OperatorProcess:
    """`sluice run` in a subprocess, with its log in a file the test can show."""

    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        namespaces: list[str] | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.namespaces = namespaces or []
        self.extra_args = extra_args or []
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        args = [
            sys.executable,
            "-m",
            "sluice",
            "run",
            "--metrics-port",
            str(self.metrics_port),
            "--metrics-address",
            "127.0.0.1",
            "--health-port",
            "0",
            *self.extra_args,
        ]
        for ns in self.namespaces:
            args += ["--namespace", ns]
        if not any(a.startswith(("--lease-duration", "--no-leader-elect")) for a in args):
            # A killed leader's lease must expire before a restarted operator
            # acts: keep that wait short in tests (production default: 15 s).
            args += ["--lease-duration", "4"]
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1"}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )
        wait_for(self._metrics_up, timeout=30, what="the operator's metrics endpoint")
        return self

    def _metrics_up(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"operator exited:\n{self.log()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=1):
                return True
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as r:
            return str(r.read().decode())

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye (the crash the operator must survive)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""
