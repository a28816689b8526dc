"""`sluice run`: parse the flags into one `Settings`, configure logging, start the app.

The flags, their names, defaults and meanings are a contract (tests/unit/test_cli.py);
their defaults are `Settings`' own.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from sluice.settings import ENV_STATUS_INTERVAL, Settings

D = Settings()  # the defaults

__all__ = ["main"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
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
    run.add_argument(
        "--metrics-port", type=int, default=D.metrics_port, help="Prometheus /metrics port"
    )
    run.add_argument(
        "--metrics-address", default=D.metrics_address, help="address the metrics server binds"
    )
    run.add_argument(
        "--health-port",
        type=int,
        default=D.health_port,
        help="liveness endpoint port (/healthz); 0 disables it",
    )
    run.add_argument(
        "--watch-timeout",
        type=float,
        default=D.watch_timeout,
        help="seconds without any event or bookmark after which a watch is deemed dead "
        "and reconnected (the API server sends bookmarks about every 60 s)",
    )
    run.add_argument(
        "--status-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="least time between two progress writes of one pipeline's status (default "
        f"{D.status_interval:g}; env {ENV_STATUS_INTERVAL}); phase changes, failures and "
        "the end are written at once",
    )
    run.add_argument(
        "--stuck-after",
        type=_positive_seconds,
        default=D.stuck_after,
        metavar="SECONDS",
        help="seconds a step may run without its pod running before Sluice reads that "
        f"Job's pods and Events and names the cause (default {D.stuck_after:g})",
    )
    run.add_argument(
        "--max-matrix",
        type=_positive_int,
        default=D.max_matrix,
        metavar="N",
        help="combinations one matrixed step may have (default "
        f"{D.max_matrix}): a static matrix over it is refused at apply, a dynamic one "
        "fails its step with reason InvalidMatrix",
    )
    run.add_argument(
        "--status-writers",
        type=_positive_int,
        default=D.status_writers,
        metavar="N",
        help="status writes and Events in flight at once, all pipelines together "
        f"(default {D.status_writers}); "
        "a pipeline's writes coalesce while they wait, so under load fewer writers leave "
        "more of the API server to starting Jobs",
    )
    run.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=D.leader_elect,
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
        default=D.lease_duration,
        help="seconds a leader's Lease lasts without renewal (failover time after a crash)",
    )
    run.add_argument(
        "--admission",
        choices=["off", "local", "cluster"],
        default=D.admission,
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
        default=D.log_level,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command != "run":
        return 2
    if args.admission == "cluster" and (
        args.webhook_cert_file is None or args.webhook_key_file is None
    ):
        parser.error("--admission cluster needs --webhook-cert-file and --webhook-key-file")
    try:
        settings = Settings.build(vars(args))
    except ValueError as e:
        parser.error(str(e))
    return _run(settings)


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


def _run(settings: Settings) -> int:
    logging.basicConfig(
        level=getattr(logging, settings.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # a line per request
    if settings.log_level != "DEBUG":
        logging.getLogger("kopf").setLevel(logging.WARNING)
    from sluice.app import StartupError, run

    try:
        return run(settings, before_loop=_tune_gc)
    except StartupError as e:
        print(f"sluice: {e}", file=sys.stderr)
        return 1
