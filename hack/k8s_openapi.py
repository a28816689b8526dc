"""Extract the core/v1 schemas Sluice checks against from the pinned Kubernetes' OpenAPI.

The source is upstream's own ``api/openapi-spec/v3/api__v1_openapi.json`` of the
``k8s.io/kubernetes`` module at the version ``hack/cluster/kubernetes/go.mod`` pins (the
one the local control plane is built from), located with ``go mod download -json`` (the
module cache the cluster build fills; the Go module proxy otherwise). The result,
``operator/sluice/k8s/core_v1.json``, is committed: the operator reads it at run time with
no network and no Go; ``hack/gen_crds.py`` writes it and ``--check`` compares it.

Only what validation needs is kept: for every definition reachable from the roots, its
``type``, ``properties``, ``items``, ``additionalProperties`` and ``format``, with
``$ref`` shortened to the definition's name; Quantity and IntOrString become
``{"x-kubernetes-int-or-string": true}``. Descriptions, defaults, ``required`` (Sluice's
pod template is a fragment), list/patch strategies and unions are dropped.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GO_MOD = ROOT / "hack" / "cluster" / "kubernetes" / "go.mod"
ARTEFACT = ROOT / "operator" / "sluice" / "k8s" / "core_v1.json"
MODULE = "k8s.io/kubernetes"
SPEC = "api/openapi-spec/v3/api__v1_openapi.json"
PREFIX = "#/components/schemas/"

ROOTS = (
    "io.k8s.api.core.v1.PodTemplateSpec",
    "io.k8s.api.core.v1.EnvVar",
    "io.k8s.api.core.v1.EnvFromSource",
    "io.k8s.api.core.v1.ResourceRequirements",
)
_INT_OR_STRING = (
    "io.k8s.apimachinery.pkg.api.resource.Quantity",
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
)
_KEPT = ("type", "format")


def pinned_version() -> str:
    """The k8s.io/kubernetes version the cluster build pins."""
    match = re.search(rf"^require {re.escape(MODULE)} (v\S+)$", GO_MOD.read_text(), re.M)
    if match is None:
        raise SystemExit(f"{GO_MOD}: no `require {MODULE} vX.Y.Z` line")
    return match.group(1)


def module_dir(version: str) -> Path:
    """Where the Go module cache holds k8s.io/kubernetes@version (downloaded if missing)."""
    go = shutil.which("go")
    if go is None:
        raise SystemExit("go is needed to read the pinned Kubernetes OpenAPI (see README)")
    out = subprocess.run(
        [go, "mod", "download", "-json", f"{MODULE}@{version}"],
        cwd=GO_MOD.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"go mod download {MODULE}@{version} failed: {out.stderr or out.stdout}")
    return Path(json.loads(out.stdout)["Dir"])


def _simplify(node: dict[str, Any]) -> dict[str, Any]:
    if "allOf" in node and len(node["allOf"]) == 1:
        node = {**node, **node["allOf"][0]}
    if "$ref" in node:
        ref = node["$ref"].removeprefix(PREFIX)
        if ref in _INT_OR_STRING:
            return {"x-kubernetes-int-or-string": True}
        return {"$ref": ref}
    out = {k: node[k] for k in _KEPT if k in node}
    if "properties" in node:
        out["properties"] = {k: _simplify(v) for k, v in node["properties"].items()}
    if "items" in node:
        out["items"] = _simplify(node["items"])
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = _simplify(node["additionalProperties"])
    return out


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if "$ref" in node else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*map(_refs, node)) if node else set()
    return set()


def extract(spec: dict[str, Any], version: str) -> dict[str, Any]:
    """The artefact from the upstream OpenAPI document."""
    schemas = spec["components"]["schemas"]
    definitions: dict[str, Any] = {}
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in definitions:
            continue
        definitions[name] = _simplify(schemas[name])
        todo += sorted(_refs(definitions[name]) - definitions.keys())
    return {
        "source": f"{MODULE}@{version}/{SPEC}",
        "version": version,
        "definitions": dict(sorted(definitions.items())),
    }


def render(artefact: dict[str, Any]) -> str:
    return json.dumps(artefact, indent=1, sort_keys=True) + "\n"


def generate() -> str:
    """The artefact's text, from the pinned module."""
    version = pinned_version()
    spec = json.loads((module_dir(version) / SPEC).read_text())
    return render(extract(spec, version))
