"""Fixtures of the fault tests: a namespace of their own and operators to kill."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.cluster import Cluster
from support.operator import OperatorProcess


@pytest.fixture
def fault_ns(crds: None, make_namespace: Callable[[str], str]) -> str:
    return make_namespace("fault-")


@pytest.fixture
def start_operator(
    cluster: Cluster, fault_ns: str, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    started: list[OperatorProcess] = []

    def start(*extra: str, namespaces: list[str] | None = None) -> OperatorProcess:
        op = OperatorProcess(
            cluster.kubeconfig,
            tmp_path / f"operator-{len(started)}.log",
            namespaces=namespaces or [fault_ns],
            extra_args=list(extra),
        )
        started.append(op)
        return op.start()

    yield start
    for op in started:
        op.stop()
