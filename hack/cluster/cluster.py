#!/usr/bin/env python3
"""Build and run a real, local Kubernetes control plane for Sluice's tests and demo.

No Docker engine and no release downloads exist on our machines, so the
upstream components are compiled from Go modules (one module per tool under
this directory; their go.mod files pin the versions) into a cache outside the
repository, once per version, and run as plain processes:

    etcd -> kube-apiserver (TLS, RBAC) -> kube-controller-manager (the real
    Job controller) + kube-scheduler + kwok (fake nodes; pods complete/fail as
    the simulation contract in kwok-stages.yaml says)

Commands: build, up, down, status, env. Standard library only, so it runs
before any virtualenv exists. State lives in `.cluster/` at the repo root.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
STATE = Path(os.environ.get("SLUICE_CLUSTER_DIR", ROOT / ".cluster"))
CACHE = Path(os.environ.get("SLUICE_CACHE", Path.home() / ".cache" / "sluice"))

# Loopback ports, chosen away from the well-known defaults so a developer's
# own cluster (if any) is not disturbed. Override with SLUICE_CLUSTER_PORT_BASE.
PORT_BASE = int(os.environ.get("SLUICE_CLUSTER_PORT_BASE", "26400"))
PORTS = {
    "etcd-client": PORT_BASE + 0,
    "etcd-peer": PORT_BASE + 1,
    "apiserver": PORT_BASE + 43,
    "controller-manager": PORT_BASE + 57,
    "scheduler": PORT_BASE + 59,
    "kwok": PORT_BASE + 47,
}
NODE_COUNT = int(os.environ.get("SLUICE_CLUSTER_NODES", "2"))
# kube-controller-manager's --controllers. The benchmarks set it to
# "*,-job-controller,-cronjob-controller" so that they, not the Job controller,
# mark their Jobs complete (and so measure the operator, not the simulator).
CONTROLLERS = os.environ.get("SLUICE_CLUSTER_CONTROLLERS", "*")
READY_TIMEOUT = float(os.environ.get("SLUICE_CLUSTER_READY_TIMEOUT", "120"))
COMPONENTS = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "sim-logs",
]
# Components that are Python scripts beside this file rather than built binaries.
SCRIPTS = {"sim-logs": HERE / "sim_logs.py"}


def log(msg: str) -> None:
    print(f"[cluster] {msg}", flush=True)


# --------------------------------------------------------------------------- versions


def _required_version(module_dir: Path, module: str) -> str:
    text = (module_dir / "go.mod").read_text()
    m = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", text, re.M)
    if not m:
        raise SystemExit(f"{module} is not required in {module_dir / 'go.mod'}")
    return m.group(1)


@dataclass(frozen=True)
class Tool:
    """One Go module under hack/cluster that builds some binaries."""

    key: str  # directory under hack/cluster
    module: str  # the upstream module whose version is the pin
    packages: tuple[str, ...]  # main packages to build
    ldflags: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()  # extra build tags

    @property
    def version(self) -> str:
        return _required_version(HERE / self.key, self.module)

    @property
    def bindir(self) -> Path:
        return CACHE / "bin" / f"{self.key}-{self.version}"

    def binaries(self) -> list[Path]:
        return [self.bindir / _binary_name(p) for p in self.packages]


def _go_output_name(package: str) -> str:
    """The file name `go build -o DIR/` gives a main package (drops a /vN suffix)."""
    parts = package.rstrip("/").split("/")
    return parts[-2] if re.fullmatch(r"v\d+", parts[-1]) else parts[-1]


def _binary_name(package: str) -> str:
    return "etcd" if package.startswith("go.etcd.io/etcd/server") else _go_output_name(package)


def _k8s_ldflags() -> tuple[str, ...]:
    # As upstream hack/lib/version.sh: a wrong version string makes the
    # binaries refuse to start (kubernetes#129842).
    v = _required_version(HERE / "kubernetes", "k8s.io/kubernetes")
    major, minor = v.lstrip("v").split(".")[:2]
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={v}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return tuple(flags)


TOOLS = [
    Tool(
        "kubernetes",
        "k8s.io/kubernetes",
        (
            "k8s.io/kubernetes/cmd/kube-apiserver",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
            "k8s.io/kubernetes/cmd/kube-scheduler",
            "k8s.io/kubernetes/cmd/kubectl",
        ),
    ),
    Tool("etcd", "go.etcd.io/etcd/server/v3", ("go.etcd.io/etcd/server/v3",)),
    Tool("kwok", "sigs.k8s.io/kwok", ("sigs.k8s.io/kwok/cmd/kwok",)),
    Tool("helm", "helm.sh/helm/v4", ("helm.sh/helm/v4/cmd/helm",)),
]


def _prometheus_version() -> str:
    """Prometheus 3.X.Y is its Go module's v0.3XX.Y (what `--version` should say)."""
    v = _required_version(HERE / "prometheus", "github.com/prometheus/prometheus")
    minor, patch = v.lstrip("v").split(".")[1:3]
    return f"{int(minor) // 100}.{int(minor) % 100}.{patch}"


# Test tools: built by `cluster.py build` (so by `make test`), not by `up`.
# promtool and the Prometheus server check the chart's alerts and dashboard;
# remove_all_sd leaves out the cloud service discoveries (static and file
# targets are all the tests use), which halves the build.
TEST_TOOLS = [
    Tool(
        "prometheus",
        "github.com/prometheus/prometheus",
        (
            "github.com/prometheus/prometheus/cmd/prometheus",
            "github.com/prometheus/prometheus/cmd/promtool",
        ),
        ldflags=(f"-X github.com/prometheus/common/version.Version={_prometheus_version()}",),
        tags=("remove_all_sd",),
    ),
]


def binary(name: str) -> Path:
    for tool in TOOLS + TEST_TOOLS:
        for b in tool.binaries():
            if b.name == name:
                return b
    raise KeyError(name)


# --------------------------------------------------------------------------- build


def build(force: bool = False, tools: list[Tool] = TOOLS) -> None:
    """Compile every tool whose binaries are missing from the cache."""
    for tool in tools:
        missing = [b for b in tool.binaries() if not b.exists()]
        if not missing and not force:
            continue
        _build_tool(tool)


def _build_tool(tool: Tool) -> None:
    go = shutil.which("go")
    if not go:
        raise SystemExit("the Go toolchain is needed to build the local control plane")
    tool.bindir.mkdir(parents=True, exist_ok=True)
    ldflags = ["-s", "-w", *tool.ldflags]
    if tool.key == "kubernetes":
        ldflags += list(_k8s_ldflags())
    elif tool.key == "helm":
        # Without it `helm version` says only "v4.3" (upstream's Makefile sets it).
        ldflags.append(f"-X helm.sh/helm/v4/internal/version.version={tool.version}")
    tmp = Path(tempfile.mkdtemp(prefix=f"build-{tool.key}-", dir=tool.bindir.parent))
    cmd = [
        go,
        "build",
        "-v",
        "-trimpath",
        "-tags",
        ",".join(("selinux", "notest", *tool.tags)),
        "-ldflags",
        " ".join(ldflags),
        "-o",
        str(tmp) + "/",
        *tool.packages,
    ]
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=readonly")
    names = ", ".join(_binary_name(p) for p in tool.packages)
    log(f"building {names} {tool.version} (cold builds take minutes; cached afterwards)")
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=HERE / tool.key,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    count, tail = 0, []
    last_report = started
    for line in proc.stdout:
        tail = ([*tail, line.rstrip()])[-40:]
        if line.strip() and not line.startswith((" ", "\t", "#")):
            count += 1  # `go build -v` prints each package as it compiles
        now = time.monotonic()
        if now - last_report >= 30:
            log(f"  {tool.key}: {count} packages compiled, {now - started:.0f}s elapsed")
            last_report = now
    if proc.wait() != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        print("\n".join(tail), file=sys.stderr)
        raise SystemExit(f"building {tool.key} failed")
    for package in tool.packages:
        (tmp / _go_output_name(package)).replace(tool.bindir / _binary_name(package))
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"built {names} in {time.monotonic() - started:.0f}s into {tool.bindir}")


# --------------------------------------------------------------------------- certificates


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _make_pki(pki: Path) -> None:
    """A CA, the API server's serving cert, client certs and the SA signing key."""
    pki.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = pki / "ca.key", pki / "ca.crt"
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca_crt),
        "-days",
        "3650",
        "-subj",
        "/CN=sluice-local-ca",
    )

    def issue(name: str, subj: str, ext: str) -> None:
        key, csr, crt = pki / f"{name}.key", pki / f"{name}.csr", pki / f"{name}.crt"
        extfile = pki / f"{name}.ext"
        extfile.write_text(ext)
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(csr),
            "-subj",
            subj,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca_crt),
            "-CAkey",
            str(ca_key),
            "-CAcreateserial",
            "-out",
            str(crt),
            "-days",
            "3650",
            "-extfile",
            str(extfile),
        )
        csr.unlink()
        extfile.unlink()

    issue(
        "apiserver",
        "/CN=kube-apiserver",
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,"
        "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,"
        "DNS:kubernetes.default.svc.cluster.local\n",
    )
    client_ext = (
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n"
    )
    issue("admin", "/O=system:masters/CN=sluice-admin", client_ext)
    issue("controller-manager", "/CN=system:kube-controller-manager", client_ext)
    issue("scheduler", "/CN=system:kube-scheduler", client_ext)
    issue("kwok", "/O=system:masters/CN=kwok", client_ext)
    # kwok's server is the nodes' kubelet (it serves pod logs): its serving certificate,
    # and the client certificate the API server presents to it.
    issue(
        "kwok-serving",
        "/CN=kwok-kubelet",
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    issue("apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet", client_ext)
    _openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
    _openssl("rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))


def _kubeconfig(path: Path, pki: Path, user: str) -> None:
    server = f"https://127.0.0.1:{PORTS['apiserver']}"
    # Paths, not embedded data, keep the file readable; all live under .cluster/.
    path.write_text(
        textwrap.dedent(f"""\
        apiVersion: v1
        kind: Config
        clusters:
        - name: sluice-local
          cluster:
            server: {server}
            certificate-authority: {pki / "ca.crt"}
        users:
        - name: {user}
          user:
            client-certificate: {pki / (user + ".crt")}
            client-key: {pki / (user + ".key")}
        contexts:
        - name: sluice-local
          context: {{cluster: sluice-local, user: {user}}}
        current-context: sluice-local
        """)
    )


# --------------------------------------------------------------------------- processes


def _pidfile(name: str) -> Path:
    return STATE / "pids" / f"{name}.pid"


def _alive(name: str) -> bool:
    try:
        pid = int(_pidfile(name).read_text())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie or a recycled pid is not our component.
    try:
        cmdline_all = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        cmdline = cmdline_all[0]
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.split(")")[-1].split()[0] == "Z":
        return False
    if name in SCRIPTS:
        return cmdline_all[1:2] == [str(SCRIPTS[name])]
    return Path(cmdline).name == name


_STARTED: dict[str, subprocess.Popen[bytes]] = {}
"""Components this process started: their exit is known for sure via poll()."""


def _start(name: str, args: list[str]) -> None:
    logs = STATE / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    _pidfile(name).parent.mkdir(parents=True, exist_ok=True)
    # Kept so `restart NAME` can bring a component back exactly as it was.
    _pidfile(name).with_suffix(".args").write_text(json.dumps(args))
    with open(logs / f"{name}.log", "ab") as out:
        argv = [sys.executable, str(SCRIPTS[name])] if name in SCRIPTS else [str(binary(name))]
        proc = subprocess.Popen(
            [*argv, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=STATE,
        )
    _pidfile(name).write_text(str(proc.pid))
    _STARTED[name] = proc


def _stop(name: str, timeout: float = 15) -> None:
    pf = _pidfile(name)
    if not pf.exists():
        return
    if _alive(name):
        pid = int(pf.read_text())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(name) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(name):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    pf.unlink(missing_ok=True)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait(what: str, check: Callable[[], bool], timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        dead = [c for c, p in _STARTED.items() if p.poll() is not None]
        if dead:
            tail = (STATE / "logs" / f"{dead[0]}.log").read_text(errors="replace")[-3000:]
            raise SystemExit(f"{dead[0]} exited while waiting for {what}:\n{tail}")
        time.sleep(0.2)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what} (logs: {STATE / 'logs'})")


def _get(url: str, pki: Path | None = None) -> tuple[int, bytes]:
    ctx = None
    if url.startswith("https"):
        ca = STATE / "pki" / "ca.crt"
        if not ca.exists():
            return 0, b""  # no cluster state yet: nothing to reach
        ctx = ssl.create_default_context(cafile=str(ca))
        if pki:
            ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def _api(path: str) -> tuple[int, bytes]:
    return _get(f"https://127.0.0.1:{PORTS['apiserver']}{path}", STATE / "pki")


def apiserver_ready() -> bool:
    return _api("/readyz")[0] == 200


def _kubectl(*args: str, stdin: str | None = None) -> str:
    r = subprocess.run(
        [str(binary("kubectl")), "--kubeconfig", str(STATE / "kubeconfig"), *args],
        input=stdin,
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout


def _nodes_ready() -> bool:
    status, body = _api("/api/v1/nodes")
    if status != 200:
        return False
    items = json.loads(body).get("items", [])
    ready = [
        n
        for n in items
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in n.get("status", {}).get("conditions", [])
        )
        and not any(
            t.get("key") == "node.kubernetes.io/not-ready"
            for t in n.get("spec", {}).get("taints", []) or []
        )
    ]
    return len(ready) >= NODE_COUNT


def _default_sa_exists() -> bool:
    return _api("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200


def is_up() -> bool:
    return all(_alive(c) for c in COMPONENTS) and apiserver_ready()


# --------------------------------------------------------------------------- up / down


def up() -> None:
    if is_up():
        log("already up")
        print_usage()
        return
    started = time.monotonic()
    build()
    if any(_pidfile(c).exists() for c in COMPONENTS):
        log("found a partly running cluster: restarting it")
        down(keep_state=False, quiet=True)
    busy = [f"{k}={p}" for k, p in PORTS.items() if not _port_free(p)]
    if busy:
        raise SystemExit(f"ports in use: {', '.join(busy)} (set SLUICE_CLUSTER_PORT_BASE)")
    STATE.mkdir(parents=True, exist_ok=True)
    pki = STATE / "pki"
    if not (pki / "kwok-serving.crt").exists():  # none yet, or from before kwok served logs
        _make_pki(pki)
    for user in ("admin", "controller-manager", "scheduler", "kwok"):
        _kubeconfig(STATE / ("kubeconfig" if user == "admin" else f"{user}.kubeconfig"), pki, user)

    etcd_url = f"http://127.0.0.1:{PORTS['etcd-client']}"
    _start(
        "etcd",
        [
            "--name=sluice",
            f"--data-dir={STATE / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{PORTS['etcd-peer']}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{PORTS['etcd-peer']}",
            f"--initial-cluster=sluice=http://127.0.0.1:{PORTS['etcd-peer']}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
            "--quota-backend-bytes=8589934592",
        ],
    )
    _wait("etcd", lambda: _get(f"{etcd_url}/health")[0] == 200)

    _start(
        "kube-apiserver",
        [
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            f"--secure-port={PORTS['apiserver']}",
            "--advertise-address=127.0.0.1",
            f"--cert-dir={STATE / 'apiserver-certs'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--enable-admission-plugins=NodeRestriction",
            # Benchmarks create thousands of objects quickly: don't let priority
            # and fairness queue our own test traffic.
            "--max-requests-inflight=1000",
            "--max-mutating-requests-inflight=500",
            # `kubectl logs`: the nodes' kubelet is kwok's server, on 127.0.0.1 (the nodes'
            # InternalIP; their Hostname resolves nowhere).
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            "--v=1",
        ],
    )
    _wait("kube-apiserver /readyz", apiserver_ready)

    _start(
        "kube-controller-manager",
        [
            f"--kubeconfig={STATE / 'controller-manager.kubeconfig'}",
            f"--authentication-kubeconfig={STATE / 'controller-manager.kubeconfig'}",
            f"--authorization-kubeconfig={STATE / 'controller-manager.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={PORTS['controller-manager']}",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--concurrent-job-syncs=20",
            f"--controllers={CONTROLLERS}",
            "--v=1",
        ],
    )
    _start(
        "kube-scheduler",
        [
            f"--kubeconfig={STATE / 'scheduler.kubeconfig'}",
            f"--authentication-kubeconfig={STATE / 'scheduler.kubeconfig'}",
            f"--authorization-kubeconfig={STATE / 'scheduler.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={PORTS['scheduler']}",
            "--leader-elect=false",
            "--v=1",
        ],
    )
    # kwok serves pod logs from the files sim-logs writes, as its `Logs` objects say.
    _kubectl("apply", "-f", str(HERE / "kwok-logs-crd.yaml"))
    _kubectl("wait", "--for=condition=Established", "crd/logs.kwok.x-k8s.io")
    _start(
        "kwok",
        [
            f"--kubeconfig={STATE / 'kwok.kubeconfig'}",
            f"--config={HERE / 'kwok-stages.yaml'}",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            f"--server-address=127.0.0.1:{PORTS['kwok']}",
            f"--tls-cert-file={pki / 'kwok-serving.crt'}",
            f"--tls-private-key-file={pki / 'kwok-serving.key'}",
            # The nodes' kubelet endpoint (status.daemonEndpoints, status.addresses).
            f"--node-port={PORTS['kwok']}",
            "--node-ip=127.0.0.1",
            "--enable-crds=Logs",
            "--cidr=10.244.0.0/16",
        ],
    )
    _start(
        "sim-logs",
        [
            f"--server=https://127.0.0.1:{PORTS['apiserver']}",
            f"--ca={pki / 'ca.crt'}",
            f"--cert={pki / 'kwok.crt'}",
            f"--key={pki / 'kwok.key'}",
            f"--dir={STATE / 'sim-logs'}",
        ],
    )
    nodes = "\n---\n".join(
        textwrap.dedent(f"""\
        apiVersion: v1
        kind: Node
        metadata:
          name: kwok-node-{i}
          annotations: {{kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}}
          labels:
            kubernetes.io/hostname: kwok-node-{i}
            kubernetes.io/os: linux
            kubernetes.io/arch: amd64
            type: kwok
        """)
        for i in range(NODE_COUNT)
    )
    _kubectl("apply", "-f", "-", stdin=nodes)
    _wait(f"{NODE_COUNT} Ready nodes", _nodes_ready)
    _wait("the default ServiceAccount", _default_sa_exists)
    log(f"up in {time.monotonic() - started:.1f}s")
    print_usage()


def down(keep_state: bool = False, quiet: bool = False) -> None:
    for name in reversed(COMPONENTS):
        _stop(name)
    if not keep_state and STATE.exists():
        shutil.rmtree(STATE)
    if not quiet:
        log("down" + (" (state kept)" if keep_state else ", state removed"))


def restart(name: str) -> None:
    """Stop one component and start it again with the same flags (fault tests)."""
    if name not in COMPONENTS:
        raise SystemExit(f"unknown component {name}; one of {', '.join(COMPONENTS)}")
    args = json.loads(_pidfile(name).with_suffix(".args").read_text())
    _stop(name)
    started = time.monotonic()
    _start(name, args)
    if name == "etcd":
        etcd_url = f"http://127.0.0.1:{PORTS['etcd-client']}"
        _wait("etcd", lambda: _get(f"{etcd_url}/health")[0] == 200)
    elif name == "kube-apiserver":
        _wait("kube-apiserver /readyz", apiserver_ready)
    log(f"restarted {name} in {time.monotonic() - started:.1f}s")


def print_usage() -> None:
    kubectl_dir = binary("kubectl").parent
    print(
        textwrap.dedent(f"""
        The local cluster is up. To use it:
          export KUBECONFIG={STATE / "kubeconfig"}
          export PATH={kubectl_dir}:$PATH    # kubectl {TOOLS[0].version}, matching the server
          kubectl get nodes
        Logs: {STATE / "logs"}/   Stop: make cluster-down
        """).rstrip()
    )


def status() -> int:
    for c in COMPONENTS:
        print(f"{c:26} {'running' if _alive(c) else 'stopped'}")
    ready = apiserver_ready()
    print(f"{'apiserver /readyz':26} {'ok' if ready else 'not ready'}")
    return 0 if is_up() else 1


def env() -> None:
    print(f"export KUBECONFIG={STATE / 'kubeconfig'}")
    print(f"export PATH={binary('kubectl').parent}:$PATH")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="compile the control plane into the cache (if missing)")
    b.add_argument("--force", action="store_true")
    sub.add_parser("up", help="start the cluster (idempotent)")
    d = sub.add_parser("down", help="stop the cluster and remove its state")
    d.add_argument("--keep-state", action="store_true")
    sub.add_parser("status", help="exit 0 when the cluster is up")
    sub.add_parser("env", help="print shell exports for KUBECONFIG and PATH")
    sub.add_parser("bin", help="print the directory holding the built binaries")
    r = sub.add_parser("restart", help="restart one component with the same flags")
    r.add_argument("component", choices=COMPONENTS)
    a = p.parse_args(argv)
    if a.cmd == "build":
        build(force=a.force, tools=TOOLS + TEST_TOOLS)
    elif a.cmd == "up":
        up()
    elif a.cmd == "down":
        down(keep_state=a.keep_state)
    elif a.cmd == "status":
        return status()
    elif a.cmd == "env":
        env()
    elif a.cmd == "restart":
        restart(a.component)
    elif a.cmd == "bin":
        for tool in TOOLS + TEST_TOOLS:
            print(tool.bindir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
