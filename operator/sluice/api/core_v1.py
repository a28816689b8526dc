"""The core/v1 types a Task carries (env, envFrom, resources), as CRD sub-schemas.

Python keeps them as plain dicts (they are copied into the Job verbatim); their schemas
here carry what upstream's do not: descriptions, CEL rules with Sluice's messages, bounds
and the quantity pattern. Their field sets are upstream's: tests/unit/test_k8s_schema.py
compares them with the pinned Kubernetes' OpenAPI (sluice.k8s.openapi).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import WithJsonSchema

from sluice.k8s.syntax import QUANTITY_PATTERN

__all__ = [
    "ENV_FROM_SCHEMA",
    "ENV_VAR_SCHEMA",
    "QUANTITY_SCHEMA",
    "RESOURCES_SCHEMA",
    "EnvFromSource",
    "EnvVar",
    "Resources",
]

_FreeForm = dict[str, Any]


# --- Kubernetes types kept as plain dicts in Python, with their structure in the CRD ---------
# The operator copies env, envFrom and resources into the Job verbatim, so Python keeps them
# as dicts; the CRD still spells their structure out, so the API server refuses a typo
# (`valeu:`), a number where Kubernetes wants a string, or a malformed quantity at apply time
# instead of the Job creation failing later.


def _str(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


QUANTITY_SCHEMA: Final[dict[str, Any]] = {
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "pattern": QUANTITY_PATTERN,
    "x-kubernetes-int-or-string": True,
}
_RESOURCE_LIST_PROPERTIES: Final = 32
ENV_VAR_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "name": _str("Name of the variable.", minLength=1),
        "value": _str("Value of the variable; may use $(params.X)."),
        "valueFrom": {
            "type": "object",
            "description": "Source of the value (Kubernetes EnvVarSource); exclusive with value.",
        },
    },
    "required": ["name"],
    "x-kubernetes-validations": [
        {
            "rule": "!(has(self.value) && has(self.valueFrom))",
            "message": "an env variable has a value or a valueFrom, not both",
        }
    ],
}


def _source_ref(kind: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"The {kind} to take every key of as a variable.",
        "properties": {
            "name": _str(f"Name of the {kind}.", minLength=1),
            "optional": {"type": "boolean", "description": f"Whether the {kind} may be absent."},
        },
        "required": ["name"],
    }


ENV_FROM_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "prefix": _str("Prefix added to every variable name."),
        "configMapRef": _source_ref("ConfigMap"),
        "secretRef": _source_ref("Secret"),
    },
    "x-kubernetes-validations": [
        {
            "rule": "has(self.configMapRef) != has(self.secretRef)",
            "message": "an envFrom source has exactly one of configMapRef and secretRef",
        }
    ],
}
RESOURCES_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "limits": {
            "type": "object",
            "description": "Most of each resource the container may use, e.g. cpu: 2, memory: 4Gi.",
            "maxProperties": _RESOURCE_LIST_PROPERTIES,
            "additionalProperties": QUANTITY_SCHEMA,
        },
        "requests": {
            "type": "object",
            "description": "Resources the scheduler reserves for the container.",
            "maxProperties": _RESOURCE_LIST_PROPERTIES,
            "additionalProperties": QUANTITY_SCHEMA,
        },
        "claims": {
            "type": "array",
            "description": "Dynamic resource claims of the pod the container uses.",
            "maxItems": 16,
            "items": {
                "type": "object",
                "properties": {
                    "name": _str("Name of a resource claim of the pod.", minLength=1),
                    "request": _str("Request of the claim to use."),
                },
                "required": ["name"],
            },
        },
    },
}
EnvVar = Annotated[_FreeForm, WithJsonSchema(ENV_VAR_SCHEMA)]
EnvFromSource = Annotated[_FreeForm, WithJsonSchema(ENV_FROM_SCHEMA)]
Resources = Annotated[_FreeForm, WithJsonSchema(RESOURCES_SCHEMA)]
