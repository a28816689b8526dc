"""`sluice run`: parse flags, configure logging and metrics, start the operator."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sluice.shell.admission import Admission
    from sluice.shell.leader import LeaderElector

__all__ = ["main"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sluice", description="Sluice: pipelines of Kubernetes Jobs.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the operator (KUBECONFIG or in-cluster config)")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="watch this namespace (repeatable); default: all namespaces",
    )
    scope.add_argument(
        "--all-namespaces", "-A", action="store_true", help="watch every namespace (the default)"
    )
    run.add_argument("--metrics-port", type=int, default=9090, help="Prometheus /metrics port")
    run.add_argument(
        "--metrics-address", default="0.0.0.0", help="address the metrics server binds"
    )
    run.add_argument(
        "--health-port",
        type=int,
        default=8080,
        help="liveness endpoint port (/healthz); 0 disables it",
    )
    run.add_argument(
        "--watch-timeout",
        type=float,
        default=70.0,
        help="seconds without any event or bookmark after which a watch is deemed dead "
        "and reconnected (the API server sends bookmarks about every 60 s)",
    )
    run.add_argument(
        "--status-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="least time between two progress writes of one pipeline's status (default 1; "
        "env SLUICE_STATUS_INTERVAL); phase changes, failures and the end are written at once",
    )
    run.add_argument(
        "--status-writers",
        type=_positive_int,
        default=4,
        metavar="N",
        help="status writes and Events in flight at once, all pipelines together (default 4); "
        "a pipeline's writes coalesce while they wait, so under load fewer writers leave "
        "more of the API server to starting Jobs",
    )
    run.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="act only while holding a coordination.k8s.io Lease (one leader per set of "
        "watched namespaces); --no-leader-elect for a single replica you fully trust",
    )
    run.add_argument(
        "--leader-election-namespace",
        default=None,
        help="namespace of the Lease (default: the pod's namespace, else 'default')",
    )
    run.add_argument(
        "--leader-election-id",
        default=None,
        help="name of the Lease (default: derived from the watched namespaces)",
    )
    run.add_argument(
        "--lease-duration",
        type=float,
        default=15.0,
        help="seconds a leader's Lease lasts without renewal (failover time after a crash)",
    )
    run.add_argument(
        "--admission",
        choices=["off", "local", "cluster"],
        default="off",
        help="validating admission webhook: off (default; the operator still fails invalid "
        "pipelines), local (serve on 127.0.0.1 with a generated CA and register a "
        "ValidatingWebhookConfiguration for the watched namespaces, removed on exit), "
        "cluster (serve on :9443 behind the chart's Service, certificates from files)",
    )
    run.add_argument(
        "--webhook-port",
        type=int,
        default=None,
        help="webhook HTTPS port (default: any free port for local, 9443 for cluster)",
    )
    run.add_argument(
        "--webhook-address",
        default=None,
        help="address the webhook binds (default: 127.0.0.1 for local, 0.0.0.0 for cluster)",
    )
    run.add_argument(
        "--webhook-cert-file",
        type=Path,
        default=None,
        help="serving certificate (PEM) for --admission cluster, e.g. a mounted tls.crt",
    )
    run.add_argument(
        "--webhook-key-file",
        type=Path,
        default=None,
        help="its private key (PEM), e.g. a mounted tls.key",
    )
    run.add_argument(
        "--webhook-ca-file",
        type=Path,
        default=None,
        help="CA bundle of the serving certificate (optional, e.g. a mounted ca.crt)",
    )
    run.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if (
        args.command == "run"
        and args.admission == "cluster"
        and (args.webhook_cert_file is None or args.webhook_key_file is None)
    ):
        parser.error("--admission cluster needs --webhook-cert-file and --webhook-key-file")
    if args.command == "run":
        return _run(args)
    return 2


def _tune_gc() -> None:
    """Keep the cyclic collector off the hot path: it runs on the event loop, so
    every hand-off waiting there waits for it too (bench/README.md has the figures).

    Everything imported so far (kopf, the official client's models, pydantic) lives
    as long as the process: frozen, a full collection scans only what the operator
    built (full pauses 144-171 ms before, 59-95 ms after, 200 chains at once). And
    the operator allocates short-lived dicts by the thousand per second (watch
    events, manifests), nearly all freed by reference counting: a young-generation
    pass every 700 of them cost about a second of CPU in a 2,000-task run, every
    20,000 about 0.15 s, with no full pass during the run.
    """
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


def _run(args: argparse.Namespace) -> int:
    import kopf
    from prometheus_client import start_http_server

    from sluice.metrics import Metrics
    from sluice.shell import handlers  # noqa: F401  (registers the kopf handlers)

    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    if args.log_level != "DEBUG":
        logging.getLogger("kopf").setLevel(logging.WARNING)
    metrics = Metrics()
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.metrics_address)
    liveness = f"http://0.0.0.0:{args.health_port}/healthz" if args.health_port else None
    namespaces = args.namespaces or []
    # Before the Lease: a standby replica answers admission reviews too (no leadership
    # needed to validate), so the webhook Service never routes to a silent replica.
    webhook = _admission(args, namespaces)
    elector = None
    if args.leader_elect:
        # A replica waiting for the Lease is healthy: answer the liveness probe
        # until kopf's own endpoint takes the port over, or Kubernetes would
        # restart every standby replica when its startup probe runs out.
        standby = _standby_health(args.health_port) if args.health_port else None
        try:
            elector = _elect(args, namespaces)
        finally:
            if standby is not None:
                standby.shutdown()
                standby.server_close()
    _tune_gc()
    try:
        asyncio.run(
            kopf.operator(
                clusterwide=not namespaces,
                namespaces=namespaces,
                standalone=True,  # one actor is guaranteed by the Lease, not kopf peering
                memo=kopf.Memo(
                    metrics=metrics,
                    elector=elector,
                    namespace_globs=any(c in ns for ns in namespaces for c in "*?!,"),
                    watch_timeout=args.watch_timeout,
                    status_interval=args.status_interval,
                    status_writers=args.status_writers,
                ),
                liveness_endpoint=liveness,
            )
        )
    finally:
        if webhook is not None:
            webhook.close()
        if elector is not None:
            elector.release()
    return 0


def _admission(args: argparse.Namespace, namespaces: list[str]) -> Admission | None:
    """Start serving the validating webhook in its own thread (--admission)."""
    from sluice.shell.admission import AdmissionConfig, start

    return start(
        AdmissionConfig(
            mode=args.admission,
            namespaces=namespaces,
            port=args.webhook_port,
            address=args.webhook_address,
            cert_file=args.webhook_cert_file,
            key_file=args.webhook_key_file,
            ca_file=args.webhook_ca_file,
        )
    )


def _standby_health(port: int) -> ThreadingHTTPServer:
    """Serve 200 on /healthz (the path kopf serves later) while this replica waits."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path.split("?")[0] == "/healthz"
            body = b'{"standby": "waiting for the leader election Lease"}' if ok else b""
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every few seconds: not worth a log line each

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    threading.Thread(target=server.serve_forever, name="standby-health", daemon=True).start()
    return server


def _elect(args: argparse.Namespace, namespaces: list[str]) -> LeaderElector:
    """Wait until this process leads; it stops acting whenever it stops leading."""
    from sluice.shell.kube import load_client
    from sluice.shell.leader import (
        LeaderElector,
        default_lease_name,
        default_lease_namespace,
        new_identity,
    )

    elector = LeaderElector(
        load_client(pool_size=2),
        namespace=args.leader_election_namespace or default_lease_namespace(),
        name=args.leader_election_id or default_lease_name(namespaces),
        identity=new_identity(),
        lease_duration=args.lease_duration,
        renew_deadline=args.lease_duration * 2 / 3,
        retry_period=max(args.lease_duration / 7.5, 0.2),
    )
    elector.acquire()
    return elector
