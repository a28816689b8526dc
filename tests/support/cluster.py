"""Access to the local control plane built by hack/cluster/cluster.py."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = ROOT / "hack" / "cluster" / "cluster.py"


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    bin_dir: Path  # holds kubectl (matching the server), kwok, etcd, ...

    @property
    def kubectl_path(self) -> Path:
        return self.bin_dir / "kubectl"

    def kubectl(
        self,
        *args: str,
        stdin: str | None = None,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
        )
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r


def run_cluster_script(*args: str, env: dict[str, str] | None = None) -> str:
    r = subprocess.run(
        [sys.executable, str(CLUSTER_SCRIPT), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if r.returncode != 0:
        raise RuntimeError(f"cluster.py {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    return r.stdout


def ensure_cluster() -> Cluster:
    """Start the local cluster if it is not up (idempotent), and describe it."""
    run_cluster_script("up")
    kubectl_dir = Path(
        next(line for line in run_cluster_script("bin").splitlines() if "kubernetes-" in line)
    )
    state = Path(os.environ.get("SLUICE_CLUSTER_DIR", ROOT / ".cluster"))
    return Cluster(kubeconfig=state / "kubeconfig", bin_dir=kubectl_dir)
