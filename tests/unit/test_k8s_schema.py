"""The core/v1 schemas Sluice checks against are the pinned Kubernetes' own."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.api import core_v1
from sluice.core.validation.k8s import unknown_fields
from sluice.k8s import openapi

ROOT = Path(__file__).resolve().parents[2]
CORE = "io.k8s.api.core.v1."


def _properties(schema: dict[str, Any]) -> set[str]:
    return set(schema["properties"])


def test_the_schemas_are_those_of_the_kubernetes_version_the_cluster_is_built_from() -> None:
    go_mod = (ROOT / "hack" / "cluster" / "kubernetes" / "go.mod").read_text()
    pinned = re.search(r"^require k8s\.io/kubernetes (v\S+)$", go_mod, re.M)

    assert pinned is not None
    assert openapi.kubernetes_version() == pinned.group(1)


def test_the_crd_sub_schemas_written_in_api_py_know_every_upstream_field_and_no_other() -> None:
    env = core_v1.ENV_VAR_SCHEMA
    env_from = core_v1.ENV_FROM_SCHEMA
    resources = core_v1.RESOURCES_SCHEMA

    assert _properties(env) == openapi.fields(openapi.ENV_VAR)
    assert _properties(env_from) == openapi.fields(openapi.ENV_FROM_SOURCE)
    for ref, kind in (("configMapRef", "ConfigMapEnvSource"), ("secretRef", "SecretEnvSource")):
        assert _properties(env_from["properties"][ref]) == openapi.fields(CORE + kind)
    assert _properties(resources) == openapi.fields(openapi.RESOURCE_REQUIREMENTS)
    claim = resources["properties"]["claims"]["items"]
    assert _properties(claim) == openapi.fields(CORE + "ResourceClaim")


def test_a_pod_spec_of_known_fields_has_no_unknown_field() -> None:
    spec = {
        "nodeSelector": {"disk": "ssd"},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [
            {"name": "main", "resources": {"limits": {"cpu": 1}}, "volumeMounts": []},
        ],
        "volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1Gi"}}],
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    }

    assert unknown_fields(spec, openapi.definition(openapi.POD_SPEC), "spec") == []


def test_unknown_fields_are_named_with_their_path_at_any_depth() -> None:
    spec = {
        "nodeSelecter": {},
        "volumes": [{"name": "v"}, {"name": "w", "emptyDir": {"medium": "", "sizeLimt": "1"}}],
        "zzz": 1,
    }

    assert unknown_fields(spec, openapi.definition(openapi.POD_SPEC), "spec") == [
        'spec: unknown field "nodeSelecter" (did you mean "nodeSelector"?)',
        'spec: unknown field "zzz"',
        'spec.volumes[1].emptyDir: unknown field "sizeLimt" (did you mean "sizeLimit"?)',
    ]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["containers", "volumes", "name", "affinity", "x", "nodeAffinity"]),
            children,
            max_size=3,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(_JSON)
def test_unknown_fields_is_total_and_bounded(value: Any) -> None:
    found = unknown_fields(value, openapi.definition(openapi.POD_SPEC), "spec")

    assert len(found) <= 10
    assert all(m.startswith("spec") and "unknown field" in m for m in found)
