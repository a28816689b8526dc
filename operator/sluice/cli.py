"""`sluice run`: parse flags, configure logging and metrics, start the operator."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

__all__ = ["main"]


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
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        return _run(args)
    return 2


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
    asyncio.run(
        kopf.operator(
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=True,
            memo=kopf.Memo(metrics=metrics),
            liveness_endpoint=liveness,
        )
    )
    return 0
