"""Shared pieces of the benchmarks.

* :class:`BenchCluster` -- a control-plane instance of its own, started by
  ``hack/cluster/cluster.py`` WITHOUT the Job controller, so the benchmark and
  nothing else marks Jobs complete (the figures are the operator's, not the
  simulator's); or, with ``full=True``, a second instance WITH it (and kwok's
  pods), for the end-to-end figures. The operator gets its own client identity
  there, and a FlowSchema that matches only that identity, so the API server
  counts the operator's requests apart from everybody else's
  (``apiserver_flowcontrol_dispatched_requests_total{flow_schema=...}``).
* :class:`Api` -- a lean asyncio client (aiohttp, raw JSON) for the
  benchmark's own calls and watches.
* :class:`Operator` -- ``python -m sluice run`` as a process, with its CPU
  time and memory read from ``/proc``.
* :class:`JobTracker` -- watches the benchmark's Jobs; stamps when each
  appears, marks it complete (patching ``status`` as the Job controller would)
  and pairs each downstream Job with its upstream's completion: the hand-off.
* :class:`Marks` -- watches a collection (pods, Jobs) and stamps when each
  object first shows a mark (added, succeeded, complete): the end-to-end
  benchmarks' clock, which has the resolution the API's timestamps lack.

All times are on the benchmark's own clock (``time.perf_counter``).
"""

from __future__ import annotations

import asyncio
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
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_PY = ROOT / "hack" / "cluster" / "cluster.py"
OUT = ROOT / "bench" / "out"

CONTROLLERS = "*,-job-controller,-cronjob-controller"
"""kube-controller-manager --controllers of the benchmark's cluster: no Job controller."""
FULL_CONTROLLERS = "*"
"""The same for the end-to-end benchmarks' instance: every controller, the Job one too."""
FULL_PORT_OFFSET = 5
"""The full instance's port base from the operator-only one's: cluster.py's ports sit at
+0, +1, +43, +47, +57 and +59, so +5 interleaves both in the block of 100 the base owns."""

OPERATOR_USER = "sluice-bench-operator"
"""The operator's client identity on the benchmark cluster (a client certificate)."""

FLOOR_MANAGED_BY = "sluice-bench-floor"
SLUICE_MANAGED_BY = "sluice"
ANN_PIPELINE = "sluice.dev/pipeline-name"
ANN_TASK = "sluice.dev/task-name"
GROUP, VERSION = "sluice.dev", "v1alpha1"

_TASK_STEP = re.compile(r"s(\d+)$")


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- statistics


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation; NaN for no values."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary_ms(samples_s: Iterable[float]) -> dict[str, float]:
    xs = list(samples_s)
    return {
        "n": len(xs),
        "p50": round(percentile(xs, 50) * 1000, 2),
        "p95": round(percentile(xs, 95) * 1000, 2),
        "p99": round(percentile(xs, 99) * 1000, 2),
        "max": round(max(xs) * 1000, 2) if xs else float("nan"),
    }


# --------------------------------------------------------------------------- cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class BenchCluster:
    """A control-plane instance for the benchmarks (its own state dir and ports)."""

    state: Path
    port_base: int
    full: bool = False
    """With the Job controller (and so kwok's pods running): the end-to-end instance."""

    @classmethod
    def from_env(cls, full: bool = False) -> BenchCluster:
        """``SLUICE_BENCH_CLUSTER_DIR`` (default ``.cluster-bench``) and
        ``SLUICE_BENCH_PORT_BASE`` (default 27400): never the shared test cluster.
        The full instance: ``<dir>-full``, port base + 5 (``SLUICE_BENCH_FULL_PORT_BASE``)."""
        state = Path(os.environ.get("SLUICE_BENCH_CLUSTER_DIR", ROOT / ".cluster-bench"))
        port = int(os.environ.get("SLUICE_BENCH_PORT_BASE", "27400"))
        if full:
            state = state.with_name(f"{state.name}-full")
            port = int(os.environ.get("SLUICE_BENCH_FULL_PORT_BASE", port + FULL_PORT_OFFSET))
        return cls(state.resolve(), port, full)

    @property
    def controllers(self) -> str:
        return FULL_CONTROLLERS if self.full else CONTROLLERS

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SLUICE_CLUSTER_DIR": str(self.state),
            "SLUICE_CLUSTER_PORT_BASE": str(self.port_base),
            "SLUICE_CLUSTER_CONTROLLERS": self.controllers,
        }

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def identity_dir(self) -> Path:
        return self.state / "bench"

    @property
    def operator_kubeconfig(self) -> Path:
        return self.identity_dir / "operator.kubeconfig"

    def _script(self, *args: str) -> str:
        r = subprocess.run(
            [sys.executable, str(CLUSTER_PY), *args],
            env=self.env,
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise SystemExit(f"cluster.py {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
        return r.stdout

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        kubectl = Path(
            next(ln for ln in self._script("bin").splitlines() if "kubernetes-" in ln)
        ) / ("kubectl")
        r = subprocess.run(
            [str(kubectl), "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args)} failed: {r.stderr.strip()}")
        return r.stdout

    def up(self, fresh: bool = False) -> None:
        if fresh:
            self.down()
        started = time.monotonic()
        self._script("up")
        self._check_controllers()
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
        self.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/pipelines.sluice.dev",
            "crd/tasks.sluice.dev",
        )
        self._operator_identity()
        log(f"bench cluster up in {time.monotonic() - started:.1f}s ({self.state.name})")

    def down(self) -> None:
        self._script("down")

    def _check_controllers(self) -> None:
        """Refuse a cluster whose Job controller would complete the Jobs itself (or,
        for the end-to-end figures, one without it)."""
        pidfile = self.state / "pids" / "kube-controller-manager.pid"
        try:
            cmdline = Path(f"/proc/{int(pidfile.read_text())}/cmdline").read_bytes()
        except (OSError, ValueError) as e:
            raise SystemExit(f"cannot inspect the bench cluster's controller manager: {e}") from e
        args = cmdline.decode(errors="replace").split("\0")
        if self.full and f"--controllers={self.controllers}" not in args:
            raise SystemExit(
                f"the cluster in {self.state} does not run every controller (the Job "
                "controller included), which the end-to-end benchmarks need: stop it, or "
                "point SLUICE_BENCH_CLUSTER_DIR / SLUICE_BENCH_PORT_BASE elsewhere"
            )
        if not self.full and f"--controllers={CONTROLLERS}" not in args:
            raise SystemExit(
                f"the cluster in {self.state} runs the Job controller; the benchmarks need "
                "their own instance without it: stop that one, or point "
                "SLUICE_BENCH_CLUSTER_DIR / SLUICE_BENCH_PORT_BASE elsewhere"
            )

    def _operator_identity(self) -> None:
        """A client certificate for the operator, cluster-admin RBAC and a FlowSchema."""
        d = self.identity_dir
        d.mkdir(parents=True, exist_ok=True)
        pki = self.state / "pki"
        key, crt = d / "operator.key", d / "operator.crt"
        if not crt.exists():
            csr, ext = d / "operator.csr", d / "operator.ext"
            ext.write_text(
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=clientAuth\n"
            )
            ca, ca_key = str(pki / "ca.crt"), str(pki / "ca.key")
            req = ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr)]
            sign = ["x509", "-req", "-in", str(csr), "-CA", ca, "-CAkey", ca_key, "-out", str(crt)]
            for args in (
                [*req, "-subj", f"/CN={OPERATOR_USER}"],
                [*sign, "-CAcreateserial", "-days", "30", "-extfile", str(ext)],
            ):
                subprocess.run(["openssl", *args], check=True, capture_output=True)
        server = yaml.safe_load(self.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
        self.operator_kubeconfig.write_text(
            textwrap.dedent(f"""\
            apiVersion: v1
            kind: Config
            clusters:
            - name: bench
              cluster: {{server: "{server}", certificate-authority: "{pki / "ca.crt"}"}}
            users:
            - name: {OPERATOR_USER}
              user: {{client-certificate: "{crt}", client-key: "{key}"}}
            contexts:
            - name: bench
              context: {{cluster: bench, user: {OPERATOR_USER}}}
            current-context: bench
            """)
        )
        # Not system:masters: that group always lands in the "exempt" FlowSchema.
        # Our own FlowSchema (exempt priority, like the benchmark's admin client,
        # so neither is queued) lets the API server count the operator's requests.
        manifests = f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {OPERATOR_USER}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {OPERATOR_USER}}}]
---
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata: {{name: {OPERATOR_USER}}}
spec:
  matchingPrecedence: 50
  priorityLevelConfiguration: {{name: exempt}}
  rules:
  - subjects: [{{kind: User, user: {{name: {OPERATOR_USER}}}}}]
    resourceRules:
    - {{verbs: ["*"], apiGroups: ["*"], resources: ["*"], namespaces: ["*"], clusterScope: true}}
    nonResourceRules: [{{verbs: ["*"], nonResourceURLs: ["*"]}}]
"""
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=manifests)


# --------------------------------------------------------------------------- API client


def _ssl_context(kubeconfig: Path) -> tuple[str, ssl.SSLContext]:
    cfg = yaml.safe_load(kubeconfig.read_text())
    ctx_name = cfg.get("current-context")
    context = next(c for c in cfg["contexts"] if c["name"] == ctx_name)["context"]
    cluster = next(c for c in cfg["clusters"] if c["name"] == context["cluster"])["cluster"]
    user = next(u for u in cfg["users"] if u["name"] == context["user"])["user"]
    ctx = ssl.create_default_context(cafile=cluster["certificate-authority"])
    ctx.load_cert_chain(user["client-certificate"], user["client-key"])
    return cluster["server"], ctx


class ApiError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body[:300]}")
        self.status = status


class Api:
    """A minimal asyncio client: raw JSON in and out, over one connection pool."""

    def __init__(self, kubeconfig: Path, connections: int = 256) -> None:
        self.server, self._ssl = _ssl_context(kubeconfig)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self.requests: Counter[str] = Counter()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # The moment a request's body is written to the socket, for callers that
            # stamp a write (see JobTracker): queueing in this client is not counted.
            trace = aiohttp.TraceConfig()

            async def chunk_sent(_: Any, ctx: Any, __: Any) -> None:
                if ctx.trace_request_ctx and "sent" in ctx.trace_request_ctx:
                    ctx.trace_request_ctx["sent"](time.perf_counter())

            trace.on_request_chunk_sent.append(chunk_sent)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=self._connections),
                timeout=aiohttp.ClientTimeout(total=60),
                trace_configs=[trace],
            )
        return self._session

    async def prewarm(self) -> None:
        """Open the whole connection pool now (TLS handshakes are not part of a figure)."""
        await asyncio.gather(*(self.text("/version") for _ in range(self._connections)))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
        sent: Callable[[float], None] | None = None,
    ) -> Any:
        self.requests[method] += 1
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        async with self.session.request(
            method,
            self.server + path,
            data=data,
            params=params,
            headers=headers,
            trace_request_ctx={"sent": sent} if sent else None,
        ) as resp:
            text = await resp.text()
            if resp.status >= 300:
                raise ApiError(resp.status, text)
            return json.loads(text) if text else None

    async def text(self, path: str) -> str:
        self.requests["GET"] += 1
        async with self.session.get(self.server + path) as resp:
            return await resp.text()

    async def resource_version(self, path: str, selector: str | None = None) -> str:
        """The collection's current resourceVersion: watch from it to miss nothing later."""
        params = {"limit": "1"}
        if selector:
            params["labelSelector"] = selector
        rv: str = (await self.call("GET", path, params=params))["metadata"]["resourceVersion"]
        return rv

    async def watch(
        self, path: str, rv: str, selector: str | None = None
    ) -> AsyncIterator[tuple[float, dict[str, Any]]]:
        """Events after resourceVersion ``rv``, stamped on arrival; reconnects."""
        while True:
            params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true"}
            params["timeoutSeconds"] = "600"
            if selector:
                params["labelSelector"] = selector
            self.requests["WATCH"] += 1
            async with self.session.get(
                self.server + path,
                params=params,
                timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
            ) as resp:
                if resp.status != 200:
                    raise ApiError(resp.status, await resp.text())
                buf = b""
                async for chunk in resp.content.iter_any():
                    stamp = time.perf_counter()
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        if not line.strip():
                            continue
                        ev = json.loads(line)
                        if ev["type"] == "ERROR":
                            raise ApiError(ev["object"].get("code", 0), json.dumps(ev))
                        rv = ev["object"]["metadata"]["resourceVersion"]
                        if ev["type"] != "BOOKMARK":
                            yield stamp, ev

    # ------------------------------------------------------------------ helpers
    async def create_namespace(self, name: str) -> str:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        await self.call("POST", "/api/v1/namespaces", body)
        return name

    async def delete_namespace(self, name: str) -> None:
        with contextlib.suppress(ApiError):
            await self.call("DELETE", f"/api/v1/namespaces/{name}")

    async def metrics(self) -> str:
        return await self.text("/metrics")


async def gather_limited(coros: Iterable[Any], limit: int) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def run(c: Any) -> Any:
        async with sem:
            return await c

    return await asyncio.gather(*(run(c) for c in coros))


# --------------------------------------------------------------------------- manifests


def step_name(i: int) -> str:
    return f"s{i:02d}"


def sim_pod_template(duration: str) -> dict[str, Any]:
    """A podTemplate whose kwok pod runs ``duration`` (e.g. "250ms") and succeeds
    (the local cluster's simulation contract, sim.sluice.dev/duration)."""
    return {"metadata": {"annotations": {"sim.sluice.dev/duration": duration}}}


def inline_task(duration: str | None = None) -> dict[str, Any]:
    task: dict[str, Any] = {"image": "busybox:1.36", "command": ["true"]}
    if duration:
        task["podTemplate"] = sim_pod_template(duration)
    return task


def chain_pipeline(name: str, length: int, duration: str | None = None) -> dict[str, Any]:
    """A Pipeline whose tasks run one after the other (the hand-off-heavy shape);
    with ``duration``, each task's pod runs that long on the full instance."""
    tasks = []
    for i in range(length):
        t: dict[str, Any] = {"name": step_name(i), "task": inline_task(duration)}
        if i:
            t["dependsOn"] = [step_name(i - 1)]
        tasks.append(t)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Pipeline",
        "metadata": {"name": name},
        "spec": {"tasks": tasks},
    }


async def apply_pipelines(api: Api, ns: str, bodies: list[dict[str, Any]], limit: int = 32) -> None:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/pipelines"
    await gather_limited((api.call("POST", path, b) for b in bodies), limit)


def complete_patch() -> dict[str, Any]:
    """What the Job controller writes when a Job succeeds (as one merge patch)."""
    now = now_rfc3339()
    cond = {"status": "True", "lastProbeTime": now, "lastTransitionTime": now}
    return {
        "status": {
            "startTime": now,
            "completionTime": now,
            "succeeded": 1,
            "conditions": [
                {"type": "SuccessCriteriaMet", **cond},
                {"type": "Complete", **cond},
            ],
        }
    }


def is_complete(job: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Complete" and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


# --------------------------------------------------------------------------- trackers


def _raise_if_dead(task: asyncio.Task[None] | None) -> None:
    if task is not None and task.done():
        task.result()  # raises what killed the watch
        raise RuntimeError("the watch ended")


JobKey = tuple[str, str, int]  # namespace, chain (pipeline), step


def job_key(job: dict[str, Any]) -> JobKey | None:
    meta = job.get("metadata") or {}
    ann = meta.get("annotations") or {}
    m = _TASK_STEP.match(ann.get(ANN_TASK, ""))
    if not m or ANN_PIPELINE not in ann:
        return None
    return meta.get("namespace", ""), ann[ANN_PIPELINE], int(m.group(1))


@dataclass
class JobTracker:
    """Watch Jobs in one namespace; complete each after ``duration`` seconds.

    hand-off sample = (watch sees Job k+1 ADDED) - (the PATCH writing Job k's
    Complete condition written to the socket). The write happens somewhere
    between the PATCH being sent and acknowledged; the send is the
    conservative end (no watcher can see the condition before it); see
    ``write_rtt`` for the other.
    """

    api: Api
    namespace: str
    duration: float = 0.0
    selector: str | None = None
    added: dict[JobKey, float] = field(default_factory=dict)
    complete_sent: dict[JobKey, float] = field(default_factory=dict)
    complete_seen: dict[JobKey, float] = field(default_factory=dict)
    """When this watch first saw each Job's Complete condition: about when any
    watcher (the operator's, the floor's) could have."""
    complete_acked: dict[JobKey, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _pending: set[asyncio.Task[None]] = field(default_factory=set)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> JobTracker:
        await self.api.prewarm()
        path = f"/apis/batch/v1/namespaces/{self.namespace}/jobs"
        rv = await self.api.resource_version(path, self.selector)
        self._task = asyncio.create_task(self._run(rv))
        return self

    async def stop(self) -> None:
        for t in [self._task, *self._pending]:
            if t is not None:
                t.cancel()
        await asyncio.gather(
            *(t for t in [self._task, *self._pending] if t), return_exceptions=True
        )

    async def _run(self, rv: str) -> None:
        path = f"/apis/batch/v1/namespaces/{self.namespace}/jobs"
        async for stamp, ev in self.api.watch(path, rv, self.selector):
            self._on_event(stamp, ev)

    def _on_event(self, stamp: float, ev: dict[str, Any]) -> None:
        job = ev["object"]
        key = job_key(job)
        if key is None:
            return
        if ev["type"] == "MODIFIED" and key not in self.complete_seen and is_complete(job):
            self.complete_seen[key] = stamp
        if ev["type"] == "ADDED" and key not in self.added:
            self.added[key] = stamp
            if not is_complete(job):
                t = asyncio.create_task(self._complete(key, job["metadata"]["name"]))
                self._pending.add(t)
                t.add_done_callback(self._pending.discard)
        self._changed.set()

    async def _complete(self, key: JobKey, name: str) -> None:
        if self.duration:
            await asyncio.sleep(self.duration)
        path = f"/apis/batch/v1/namespaces/{self.namespace}/jobs/{name}/status"

        def sent(t: float) -> None:
            self.complete_sent[key] = t

        try:
            await self.api.call(
                "PATCH",
                path,
                complete_patch(),
                content_type="application/merge-patch+json",
                sent=sent,
            )
        except ApiError as e:
            self.errors.append(f"{name}: {e}")
            return
        self.complete_acked[key] = time.perf_counter()
        self._changed.set()

    def _handoff_pairs(self) -> Iterator[tuple[JobKey, float]]:
        """(Job k, when Job k+1 was seen ADDED) for every Job k whose Complete was sent."""
        for (ns, chain, step), t in self.added.items():
            up = (ns, chain, step - 1)
            if step and up in self.complete_sent:
                yield up, t

    @property
    def handoffs(self) -> list[float]:
        return [t - self.complete_sent[up] for up, t in self._handoff_pairs()]

    def handoff_parts(self) -> tuple[list[float], list[float]]:
        """Each hand-off cut where a watcher sees the completion: (PATCH sent ->
        Complete seen, the API server's part before any controller can act;
        Complete seen -> next Job seen, the controller's reaction and its create)."""
        pairs = [(up, t) for up, t in self._handoff_pairs() if up in self.complete_seen]
        seen = [self.complete_seen[up] - self.complete_sent[up] for up, _ in pairs]
        after = [t - self.complete_seen[up] for up, t in pairs]
        return seen, after

    @property
    def write_rtt(self) -> list[float]:
        return [
            self.complete_acked[k] - t
            for k, t in self.complete_sent.items()
            if k in self.complete_acked
        ]

    async def wait_completed(self, count: int, timeout: float, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while len(self.complete_acked) < count:
            _raise_if_dead(self._task)
            self._changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"{what}: {len(self.complete_acked)}/{count} Jobs completed after {timeout}s"
                    + (f"; errors: {self.errors[:3]}" if self.errors else "")
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))


@dataclass
class PipelineTracker:
    """Watch Pipelines in one namespace: when each is first seen Succeeded."""

    api: Api
    namespace: str
    succeeded: dict[str, float] = field(default_factory=dict)
    phases: dict[str, str] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> PipelineTracker:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/pipelines"
        rv = await self.api.resource_version(path)

        async def run() -> None:
            async for stamp, ev in self.api.watch(path, rv):
                meta = ev["object"]["metadata"]
                phase = (ev["object"].get("status") or {}).get("phase") or ""
                self.phases[meta["name"]] = phase
                if phase == "Succeeded" and meta["name"] not in self.succeeded:
                    self.succeeded[meta["name"]] = stamp
                self._changed.set()

        self._task = asyncio.create_task(run())
        return self

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def wait_succeeded(
        self, count: int, timeout: float, progress: Callable[[int], None] | None = None
    ) -> float:
        deadline = time.monotonic() + timeout
        last_report = time.monotonic()
        while len(self.succeeded) < count:
            _raise_if_dead(self._task)
            self._changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                stuck = Counter(self.phases.values())
                raise TimeoutError(
                    f"{len(self.succeeded)}/{count} pipelines Succeeded after {timeout}s; "
                    f"phases {dict(stuck)}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))
            if progress and time.monotonic() - last_report > 10:
                last_report = time.monotonic()
                progress(len(self.succeeded))
        return max(self.succeeded.values())


# --------------------------------------------------------------------------- marks


def parse_time(value: str | None) -> float | None:
    """An API timestamp (RFC 3339, whole seconds for most fields) as a Unix time."""
    if not value:
        return None
    return datetime.fromisoformat(value).timestamp()


MarkKey = tuple[str, str]  # pipeline (or chain), task (step) -- from the object's labels


def label_key(obj: dict[str, Any]) -> MarkKey | None:
    """(pipeline, task) from the sluice.dev labels Sluice (and the floors) put on
    their Jobs and, through the pod template, on the Jobs' pods."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    pipeline, task = labels.get("sluice.dev/pipeline"), labels.get("sluice.dev/task")
    return (pipeline, task) if pipeline and task else None


def pod_marks(pod: dict[str, Any]) -> list[str]:
    phase = (pod.get("status") or {}).get("phase")
    return ["added", *([phase.lower()] if phase in ("Succeeded", "Failed") else [])]


def job_marks(job: dict[str, Any]) -> list[str]:
    marks = ["added"]
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("status") == "True" and c.get("type") in ("Complete", "Failed"):
            marks.append(c["type"].lower())
    return marks


def pod_times(pod: dict[str, Any]) -> dict[str, float | None]:
    """The pod's own timestamps (whole seconds): created, and its main container's
    finishedAt."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    finished = None
    for cs in status.get("containerStatuses") or []:
        if cs.get("name") == "main":
            finished = ((cs.get("state") or {}).get("terminated") or {}).get("finishedAt")
    return {"created": parse_time(meta.get("creationTimestamp")), "finished": parse_time(finished)}


@dataclass
class Marks:
    """Watch one collection; stamp (benchmark clock, on arrival) when each object
    first shows each of its marks, e.g. a pod "added" and "succeeded", a Job "added"
    and "complete". ``times`` keeps what ``extract`` reads from each object (its
    API timestamps), updated on every event that has them.

    A watch started before the objects exist sees each one's ADDED event: the
    "added" stamp is when the create reached this client (the create's delivery
    after its write). A mark seen on a later event is when that status write
    reached it. Both delays are the API server's; for the pairs measured here
    (one write, then another that follows it) they cancel but for their
    difference, a few ms on an idle server (see bench/README.md).
    """

    api: Api
    path: str
    marks: Callable[[dict[str, Any]], Iterable[str]]
    key: Callable[[dict[str, Any]], MarkKey | None] = label_key
    extract: Callable[[dict[str, Any]], dict[str, float | None]] | None = None
    selector: str | None = None
    seen: dict[str, dict[MarkKey, float]] = field(default_factory=dict)
    times: dict[MarkKey, dict[str, float | None]] = field(default_factory=dict)
    gone: set[MarkKey] = field(default_factory=set)
    _task: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> Marks:
        rv = await self.api.resource_version(self.path, self.selector)
        self._task = asyncio.create_task(self._run(rv))
        return self

    async def _run(self, rv: str) -> None:
        async for stamp, ev in self.api.watch(self.path, rv, self.selector):
            obj = ev["object"]
            key = self.key(obj)
            if key is None:
                continue
            if ev["type"] == "DELETED":
                self.gone.add(key)
            else:
                for m in self.marks(obj):
                    self.seen.setdefault(m, {}).setdefault(key, stamp)
            if self.extract is not None:
                got = self.extract(obj)
                old = self.times.setdefault(key, {})
                old.update({k: v for k, v in got.items() if v is not None or k not in old})
            self._changed.set()

    def at(self, mark: str, key: MarkKey) -> float | None:
        return self.seen.get(mark, {}).get(key)

    def count(self, mark: str) -> int:
        return len(self.seen.get(mark, {}))

    async def wait(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            _raise_if_dead(self._task)
            self._changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                counts = {m: len(v) for m, v in self.seen.items()}
                raise TimeoutError(f"{what}: not done after {timeout}s; seen {counts}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def pod_watch(api: Api, ns: str, selector: str | None = None) -> Marks:
    return Marks(
        api, f"/api/v1/namespaces/{ns}/pods", pod_marks, extract=pod_times, selector=selector
    )


def pipeline_key(obj: dict[str, Any]) -> MarkKey | None:
    name = (obj.get("metadata") or {}).get("name")
    return (name, "") if name else None


def pipeline_marks(obj: dict[str, Any]) -> list[str]:
    phase = (obj.get("status") or {}).get("phase")
    return ["added", *([phase.lower()] if phase in ("Succeeded", "Failed") else [])]


def pipeline_watch(api: Api, ns: str) -> Marks:
    """Pipelines by name (key ``(name, "")``): "added", "succeeded", "failed"."""
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/pipelines"
    return Marks(api, path, pipeline_marks, key=pipeline_key)


async def wait_pipelines(pls: Marks, names: Iterable[str], timeout: float) -> float:
    """Until every named Pipeline is seen Succeeded (any Failed is an error): the last
    one's stamp."""
    keys = [(n, "") for n in names]

    def done() -> bool:
        failed = [k[0] for k in keys if pls.at("failed", k) is not None]
        if failed:
            raise RuntimeError(f"pipelines failed: {failed[:5]}")
        return all(pls.at("succeeded", k) is not None for k in keys)

    await pls.wait(done, timeout, f"{len(keys)} pipelines Succeeded")
    return max(pls.seen["succeeded"][k] for k in keys)


def job_watch(api: Api, ns: str, selector: str | None = None) -> Marks:
    return Marks(api, f"/apis/batch/v1/namespaces/{ns}/jobs", job_marks, selector=selector)


# --------------------------------------------------------------------------- processes


_PYSPY = ["--rate", "200", "--nonblocking", "--format", "raw", "--threads"]


class Operator:
    """The real operator (`python -m sluice run`) as a process, with the bench identity."""

    def __init__(
        self,
        cluster: BenchCluster,
        namespaces: list[str],
        log_path: Path,
        extra_args: list[str] | None = None,
    ) -> None:
        self.cluster = cluster
        self.namespaces = namespaces
        self.log_path = log_path
        self.extra_args = extra_args or []
        self.metrics_port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.profiler: subprocess.Popen[bytes] | None = None

    def start(self) -> Operator:
        args = [sys.executable, "-m", "sluice", "run", "--metrics-port", str(self.metrics_port)]
        args += ["--metrics-address", "127.0.0.1", "--health-port", "0", *self.extra_args]
        args += os.environ.get("SLUICE_BENCH_OPERATOR_ARGS", "").split()  # e.g. --log-level DEBUG
        for ns in self.namespaces:
            args += ["--namespace", ns]
        env = {
            **os.environ,
            "KUBECONFIG": str(self.cluster.operator_kubeconfig),
            "PYTHONUNBUFFERED": "1",
        }
        src = os.environ.get("SLUICE_BENCH_OPERATOR_SRC")
        if src:
            # Another checkout's operator (e.g. `git archive` of an older commit): before/after.
            env["PYTHONPATH"] = os.pathsep.join(
                [str(Path(src) / "operator"), env.get("PYTHONPATH", "")]
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )
        deadline = time.monotonic() + 60
        while not self._metrics_up():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the operator did not start:\n{self.log()}")
            time.sleep(0.1)
        profile = os.environ.get("SLUICE_BENCH_PROFILE")
        pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if profile and Path(pyspy).exists():
            # py-spy from PyPI, when installed: the operator's stacks (collapsed) per phase.
            out_svg = Path(profile) / f"{self.log_path.stem}.txt"
            out_svg.parent.mkdir(parents=True, exist_ok=True)
            self.profiler = subprocess.Popen(
                [pyspy, "record", "-o", str(out_svg), "--pid", str(self.proc.pid), *_PYSPY],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        return self

    def _metrics_up(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=1):
                return True
        except OSError:
            return False

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            return str(r.read().decode())

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """utime + stime of the operator process (all its threads)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        return ticks / os.sysconf("SC_CLK_TCK")

    def memory_mib(self) -> dict[str, float]:
        """VmRSS (now) and VmHWM (peak resident set) in MiB."""
        out = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) / 1024
        return out

    def stop(self) -> None:
        if self.profiler is not None and self.profiler.poll() is None:
            self.profiler.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.profiler.wait(30)
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""


# --------------------------------------------------------------------------- metrics


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([0-9.eE+-]+|NaN|\+Inf)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Samples of one metric family in the Prometheus text format."""
    out = []
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = _SAMPLE.match(line)
        if not m or m.group(1) != name:
            continue
        labels = dict(_LABEL.findall(m.group(2) or ""))
        out.append((labels, float(m.group(3))))
    return out


def operator_requests(metrics_text: str) -> float:
    """Requests the API server dispatched for the operator's identity."""
    return sum(
        v
        for labels, v in parse_metrics(
            metrics_text, "apiserver_flowcontrol_dispatched_requests_total"
        )
        if labels.get("flow_schema") == OPERATOR_USER
    )


def request_breakdown(metrics_text: str) -> Counter[str]:
    """apiserver_request_total by verb/resource[/subresource], all clients."""
    c: Counter[str] = Counter()
    for labels, v in parse_metrics(metrics_text, "apiserver_request_total"):
        key = f"{labels.get('verb')} {labels.get('resource')}"
        if labels.get("subresource"):
            key += f"/{labels['subresource']}"
        c[key] += int(v)  # a counter: whole numbers, printed as floats
    return c


# --------------------------------------------------------------------------- results


def write_result(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")


def run_id() -> str:
    return os.urandom(3).hex()


def log_dir() -> Path:
    d = OUT / "logs"
    d.mkdir(parents=True, exist_ok=True)
    return d


def tmp_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="sluice-bench-"))


# --------------------------------------------------------------------------- the floor

ANN_LENGTH = "bench.sluice.dev/length"


def floor_job(namespace: str, chain: str, step: int, length: int) -> dict[str, Any]:
    """A Job like the ones Sluice creates, for the floor client's chains."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"{chain}-{step_name(step)}",
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": FLOOR_MANAGED_BY,
                "sluice.dev/pipeline": chain,
                "sluice.dev/task": step_name(step),
            },
            "annotations": {
                ANN_PIPELINE: chain,
                ANN_TASK: step_name(step),
                ANN_LENGTH: str(length),
            },
        },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {"sluice.dev/pipeline": chain}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox:1.36", "command": ["true"]}],
                },
            },
        },
    }


class Floor:
    """bench/floor.py (or another floor script, e.g. podfloor.py) as a process: the
    minimal watch-and-create client."""

    def __init__(self, kubeconfig: Path, log_path: Path, script: str = "floor.py") -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.script = script
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Floor:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        err = open(self.log_path, "a")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name(self.script)), str(self.kubeconfig)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "ready" once its watch has a resourceVersion
        if line.strip() != "ready":
            raise SystemExit(f"the floor client did not start: {self.log_path.read_text()}")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)


# --------------------------------------------------------------------------- the pod floor

POD_FLOOR_MANAGED_BY = "sluice-bench-podfloor"


def pod_floor_job(
    namespace: str, chain: str, step: int, length: int, duration: str
) -> dict[str, Any]:
    """A Job of the pod floor's chains (bench/podfloor.py): shaped like Sluice's (one
    pod, no retries, container ``main``), its pod running ``duration`` on kwok. Its
    pod carries what the pod floor needs to create the next one."""
    meta = {
        "labels": {
            "app.kubernetes.io/managed-by": POD_FLOOR_MANAGED_BY,
            "sluice.dev/pipeline": chain,
            "sluice.dev/task": step_name(step),
        },
        "annotations": {
            ANN_PIPELINE: chain,
            ANN_TASK: step_name(step),
            ANN_LENGTH: str(length),
            "sim.sluice.dev/duration": duration,
        },
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"{chain}-{step_name(step)}", "namespace": namespace, **meta},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": meta,
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox:1.36", "command": ["true"]}],
                },
            },
        },
    }
