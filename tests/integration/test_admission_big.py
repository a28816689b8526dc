"""Big and odd but valid input is admitted by the webhook and runs to the end.

300 tasks in a fan-out and fan-in, a chain of 100, names at the longest Kubernetes
allows, unicode everywhere a user may write it, large env values. The Pipeline's status
stays compact: its size is measured and printed (run with -s to see it).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from sluice.core import naming, validation
from sluice.shell import admission
from support.cluster import Cluster
from support.operator import OperatorProcess
from support.pipelines import Sluice, sim
from support.wait import wait_for

pytestmark = pytest.mark.cluster

BUSYBOX = "busybox:1.36"
FAST = sim(duration="100ms")


@pytest.fixture(scope="module")
def ns(
    cluster: Cluster,
    crds: None,
    api_client: client.ApiClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """A namespace watched by an operator that serves the webhook for it."""
    name = f"adm-big-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    op = OperatorProcess(
        cluster.kubeconfig,
        tmp_path_factory.mktemp("adm-big") / "op.log",
        namespaces=[name],
        extra_args=["--admission", "local", "--no-leader-elect"],
    ).start()
    vwcs = client.AdmissionregistrationV1Api(api_client)
    vwc_name = admission.local_configuration_name([name])

    def registered() -> bool:
        try:
            vwcs.read_validating_webhook_configuration(vwc_name)
        except client.ApiException as e:
            if e.status == 404:
                return False
            raise
        return True

    wait_for(registered, timeout=30, what="the webhook registration")
    try:
        yield name
    finally:
        op.stop()
        core.delete_namespace(name, propagation_policy="Background")
    assert not registered()


def apply(cluster: Cluster, namespace: str, name: str, spec: dict[str, Any]) -> str:
    """kubectl apply --server-side (no last-applied annotation doubling big specs)."""
    manifest = {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": name},
        "spec": spec,
    }
    r = cluster.kubectl(
        "apply", "--server-side", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest)
    )
    return r.stderr


def sizes(s: Sluice, name: str) -> tuple[int, int]:
    obj = s.get(name)
    whole = len(json.dumps(obj, separators=(",", ":")).encode())
    status = len(json.dumps(obj["status"], separators=(",", ":")).encode())
    return whole, status


def test_fan_out_and_in_of_300_tasks_runs_and_its_status_stays_compact(
    cluster: Cluster, api_client: client.ApiClient, ns: str
) -> None:
    n = 300
    spec = {
        "tasks": [
            {"name": "split", "task": {"image": BUSYBOX, "podTemplate": FAST}},
            *(
                {
                    "name": f"shard-{i:03d}",
                    "dependsOn": ["split"],
                    "task": {"image": BUSYBOX, "podTemplate": FAST},
                }
                for i in range(n)
            ),
            {
                "name": "merge",
                "dependsOn": [f"shard-{i:03d}" for i in range(n)],
                "task": {"image": BUSYBOX, "podTemplate": FAST},
            },
        ]
    }
    assert validation.check_pipeline(spec, name="fan", tasks={}).findings == []
    started = time.monotonic()
    warnings = apply(cluster, ns, "fan", spec)
    s = Sluice(api_client, ns)

    st = s.wait_phase("fan", "Succeeded", timeout=420)
    elapsed = time.monotonic() - started
    assert "Warning" not in warnings
    assert st["progress"] == f"{n + 2}/{n + 2}"
    assert len(s.jobs("fan")) == n + 2
    whole, status = sizes(s, "fan")
    print(
        f"\n300-task fan-out/in: {elapsed:.0f}s; object {whole / 1024:.1f} KiB, "
        f"status {status / 1024:.1f} KiB ({status / (n + 2):.0f} B per task)"
    )
    # Well under the 1.5 MiB etcd stores, and under the per-task budget the webhook's
    # size check assumes.
    assert status < 256 * 1024
    assert status / (n + 2) < validation.STATUS_BYTES_PER_TASK
    assert whole < validation.MAX_OBJECT_BYTES / 4


def test_a_chain_of_100_runs_in_order(
    cluster: Cluster, api_client: client.ApiClient, ns: str
) -> None:
    n = 100
    spec = {
        "tasks": [
            {
                "name": f"step-{i:03d}",
                **({"dependsOn": [f"step-{i - 1:03d}"]} if i else {}),
                "task": {"image": BUSYBOX, "podTemplate": FAST},
            }
            for i in range(n)
        ]
    }
    started = time.monotonic()
    apply(cluster, ns, "chain", spec)
    s = Sluice(api_client, ns)

    st = s.wait_phase("chain", "Succeeded", timeout=420)
    elapsed = time.monotonic() - started
    jobs = sorted(s.jobs("chain"), key=lambda j: j.metadata.creation_timestamp)
    order = [j.metadata.annotations["sluice.dev/task-name"] for j in jobs]
    assert order == [f"step-{i:03d}" for i in range(n)]
    _, status = sizes(s, "chain")
    print(f"\nchain of 100: {elapsed:.0f}s ({elapsed / n:.2f}s per step); status {status} B")
    assert st["progress"] == "100/100"


def test_names_at_the_kubernetes_limits_run_with_jobs_shortened_by_a_hash(
    cluster: Cluster, api_client: client.ApiClient, ns: str
) -> None:
    # A Pipeline name of 253 characters with dots; two 63-character steps that differ
    # only at the end, so only the hash keeps their Job names apart.
    name = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    first, second = "x" * 62 + "1", "x" * 62 + "2"
    assert len(name) == 253
    spec = {
        "tasks": [
            {"name": first, "task": {"image": BUSYBOX, "podTemplate": FAST}},
            {"name": second, "dependsOn": [first], "task": {"image": BUSYBOX, "podTemplate": FAST}},
        ]
    }
    apply(cluster, ns, name, spec)
    s = Sluice(api_client, ns)

    s.wait_phase(name, "Succeeded", timeout=120)
    jobs = s.jobs(naming.label_value(name))
    names = {j.metadata.name for j in jobs}
    assert len(names) == 2
    for job in jobs:
        assert naming.is_dns_label(job.metadata.name)
        assert job.metadata.annotations["sluice.dev/pipeline-name"] == name
        assert all(naming.is_label_value(v) for v in job.metadata.labels.values())


def test_unicode_and_large_values_pass_through_untouched(
    cluster: Cluster, api_client: client.ApiClient, ns: str
) -> None:
    greeting = "Grüße, naïve café ✓ 日本語 🚀 ñ"
    big = "x" * (100 * 1024)  # under Linux's 128 KiB per variable
    spec = {
        "params": [{"name": "greeting", "value": greeting}, {"name": "blob", "value": big}],
        "tasks": [
            {
                "name": "speak",
                "task": {
                    "image": BUSYBOX,
                    "command": ["echo", "$(params.greeting)", "¿qué?"],
                    "env": [
                        {"name": "GREETING", "value": "$(params.greeting)"},
                        {"name": "BLOB", "value": "$(params.blob)"},
                        *({"name": f"CHUNK_{i}", "value": str(i) * 8192} for i in range(10)),
                    ],
                    "params": [
                        {"name": "greeting", "description": "Ünïcødé description ✓"},
                        {"name": "blob"},
                    ],
                    "podTemplate": {
                        "metadata": {
                            "annotations": {"note": greeting, **FAST["metadata"]["annotations"]}
                        }
                    },
                },
            },
            {"name": "after", "dependsOn": ["speak"], "task": {"image": BUSYBOX}},
        ],
    }
    assert validation.check_pipeline(spec, name="odd", tasks={}).findings == []
    warnings = apply(cluster, ns, "odd", spec)
    s = Sluice(api_client, ns)

    st = s.wait_phase("odd", "Succeeded", timeout=120)
    assert "Warning" not in warnings
    job = next(
        j for j in s.jobs("odd") if j.metadata.annotations["sluice.dev/task-name"] == "speak"
    )
    container = job.spec.template.spec.containers[0]
    assert container.command == ["echo", greeting, "¿qué?"]
    env = {e.name: e.value for e in container.env}
    assert env["GREETING"] == greeting
    assert env["BLOB"] == big
    assert env["CHUNK_9"] == "9" * 8192
    assert job.spec.template.metadata.annotations["note"] == greeting
    _, status = sizes(s, "odd")
    assert status < 4096  # the big values live in the spec, never in the status
    assert st["message"] == "All 2 steps succeeded."


def test_a_huge_env_value_is_admitted_with_a_warning(
    cluster: Cluster, api_client: client.ApiClient, ns: str, tmp_path: Path
) -> None:
    spec = {
        "tasks": [
            {
                "name": "a",
                "task": {
                    "image": BUSYBOX,
                    "env": [{"name": "HUGE", "value": "y" * (200 * 1024)}],
                    "podTemplate": FAST,
                },
            }
        ]
    }
    warnings = apply(cluster, ns, "huge", spec)

    assert "Linux refuses to start a process with a variable over 128 KiB" in warnings
    Sluice(api_client, ns).wait_phase("huge", "Succeeded", timeout=120)  # kwok has no exec
