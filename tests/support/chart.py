"""The Helm chart in tests: render it with the cached helm binary, apply what it
renders, and act as the ServiceAccount it creates."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from support.cluster import ROOT, Cluster

CHART = ROOT / "helm" / "sluice"


def _load(name: str, path: Path) -> types.ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gen_manifests = _load("gen_manifests", ROOT / "hack" / "gen_manifests.py")


def render(*sets: str, **kwargs: Any) -> str:
    """`helm template` of helm/sluice (see hack/gen_manifests.py `render`)."""
    text: str = gen_manifests.render(*sets, **kwargs)
    return text


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, got {len(matches)}"
    return matches[0]


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def apply(cluster: Cluster, manifest: str) -> None:
    """Server-side apply, as a user of the plain manifests would."""
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=sluice-tests",
        "-f",
        "-",
        stdin=manifest,
    )


def delete_cluster_scoped(cluster: Cluster, objects: list[dict[str, Any]]) -> None:
    for o in objects:
        if o["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            cluster.kubectl(
                "delete",
                o["kind"].lower(),
                o["metadata"]["name"],
                "--ignore-not-found",
                "--wait=false",
            )


def service_account_kubeconfig(
    api_client: client.ApiClient, cluster: Cluster, namespace: str, name: str, path: Path
) -> Path:
    """A kubeconfig that authenticates as ServiceAccount namespace/name with a
    bound token from the TokenRequest API (server and CA from the admin one)."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    token = (
        client.CoreV1Api(api_client)
        .create_namespaced_service_account_token(name, namespace, request)
        .status.token
    )
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    server = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": server}],
        "users": [{"name": f"{namespace}-{name}", "user": {"token": token}}],
        "contexts": [
            {
                "name": "sa",
                "context": {
                    "cluster": "local",
                    "user": f"{namespace}-{name}",
                    "namespace": namespace,
                },
            }
        ],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def can_i(cluster: Cluster, kubeconfig: Path, verb: str, resource: str, *flags: str) -> bool:
    """`kubectl auth can-i`, authenticated with `kubeconfig` (exit 0 yes, 1 no)."""
    if "/" in resource:  # pipelines.sluice.dev/status: a subresource
        resource, sub = resource.split("/", 1)
        flags = (*flags, f"--subresource={sub}")
    r = subprocess.run(
        [
            str(cluster.kubectl_path),
            "--kubeconfig",
            str(kubeconfig),
            "auth",
            "can-i",
            verb,
            resource,
            *flags,
        ],
        capture_output=True,
        text=True,
    )
    answer = r.stdout.strip()
    assert answer in ("yes", "no"), f"can-i {verb} {resource} {flags}: {r.stdout}{r.stderr}"
    return answer == "yes"
