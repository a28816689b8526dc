"""Kubernetes syntax rules: one home for each, as a pattern and a predicate.

Each rule exports the pattern string (anchored ``^...$``, written for both RE2, which
the API server's CEL and OpenAPI ``pattern`` use, and Python's ``re``) for the CRD
schema, and a predicate for the checks in Python, so the schema and the operator can
never disagree. Predicates match with ``re.ASCII`` and ``fullmatch`` (``$`` alone would
also match before a final newline in Python).

The rules are Kubernetes' own (``k8s.io/apimachinery/pkg/util/validation``,
``resource.Quantity``, ``github.com/distribution/reference``).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, Final

__all__ = [
    "DNS_LABEL_MAX",
    "DNS_LABEL_PATTERN",
    "DNS_SUBDOMAIN_MAX",
    "DNS_SUBDOMAIN_PATTERN",
    "ENV_NAME_PATTERN",
    "IMAGE_MAX",
    "IMAGE_MESSAGE",
    "IMAGE_PATTERN",
    "LABEL_VALUE_MAX",
    "LABEL_VALUE_PATTERN",
    "PARAM_NAME_PATTERN",
    "QUALIFIED_NAME_PATTERN",
    "QUANTITY_PATTERN",
    "is_dns_label",
    "is_dns_subdomain",
    "is_env_name",
    "is_image",
    "is_label_value",
    "is_param_name",
    "is_qualified_name",
    "parse_quantity",
]


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern.removeprefix("^").removesuffix("$"), re.ASCII)


#: RFC 1123 label: most object names, step names (they end up in Job names and labels).
DNS_LABEL_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_LABEL_MAX: Final = 63

#: RFC 1123 subdomain: the names of Pipelines, Tasks and ServiceAccounts.
DNS_SUBDOMAIN_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_SUBDOMAIN_MAX: Final = 253

#: A label value (the empty string is one), at most LABEL_VALUE_MAX characters.
LABEL_VALUE_PATTERN: Final = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
LABEL_VALUE_MAX: Final = 63

#: The name part of a qualified name (a label or annotation key is ``[prefix/]name``,
#: the prefix a DNS subdomain, the name at most 63 characters).
QUALIFIED_NAME_PATTERN: Final = r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$"

#: An environment variable name: printable ASCII but '=' (Kubernetes >= 1.30).
ENV_NAME_PATTERN: Final = r"^[\x21-\x3c\x3e-\x7e]+$"

#: What ``$(params.NAME)`` can refer to (sluice.core.params.PARAM_REF): a declared name
#: outside this pattern could never be used.
PARAM_NAME_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_.-]*$"

# A container image reference, as the kubelet parses it (the grammar of
# github.com/distribution/reference): [domain[:port]/]path[:tag][@digest], the path in
# lowercase.
_DOMAIN_PART = r"[a-zA-Z\d](?:[a-zA-Z\d-]*[a-zA-Z\d])?"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[a-fA-F\d:]+\])(?::\d+)?"
_PATH_PART = r"[a-z\d]+(?:(?:[._]|__|-+)[a-z\d]+)*"
_TAG = r"\w[\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z\d]*(?:[-_+.][A-Za-z][A-Za-z\d]*)*:[a-fA-F\d]{32,}"
IMAGE_PATTERN: Final = (
    rf"^(?:{_DOMAIN}/)?{_PATH_PART}(?:/{_PATH_PART})*(?::{_TAG})?(?:@{_DIGEST})?$"
)
IMAGE_MESSAGE: Final = (
    "is not a valid image reference: [registry[:port]/]name[:tag][@digest], the name in lowercase"
)
IMAGE_MAX: Final = 1024

#: A Kubernetes resource quantity (k8s.io/apimachinery resource.Quantity), e.g. 500m, 4Gi.
QUANTITY_PATTERN: Final = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)

_DNS_LABEL = _compile(DNS_LABEL_PATTERN)
_DNS_SUBDOMAIN = _compile(DNS_SUBDOMAIN_PATTERN)
_LABEL_VALUE = _compile(LABEL_VALUE_PATTERN)
_QUALIFIED_NAME = _compile(QUALIFIED_NAME_PATTERN)
_ENV_NAME = _compile(ENV_NAME_PATTERN)
_PARAM_NAME = _compile(PARAM_NAME_PATTERN)
_IMAGE = _compile(IMAGE_PATTERN)
# The quantity pattern with groups for its number and suffix, for the parser.
_QUANTITY = re.compile(
    r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"([KMGTPE]i|[numkMGTPE]|[eE][+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))?",
    re.ASCII,
)
_SUFFIX: Final[dict[str, Decimal]] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    **{s: Decimal(1024**i) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"), 1)},
}


def is_dns_label(s: str) -> bool:
    """RFC 1123 label as Kubernetes checks it (most object names, step names)."""
    return len(s) <= DNS_LABEL_MAX and _DNS_LABEL.fullmatch(s) is not None


def is_dns_subdomain(s: str) -> bool:
    """RFC 1123 subdomain as Kubernetes checks it (Pipeline names may have dots)."""
    return len(s) <= DNS_SUBDOMAIN_MAX and _DNS_SUBDOMAIN.fullmatch(s) is not None


def is_label_value(s: str) -> bool:
    """Whether Kubernetes accepts ``s`` as a label value (the empty string is valid)."""
    return len(s) <= LABEL_VALUE_MAX and _LABEL_VALUE.fullmatch(s) is not None


def is_qualified_name(key: str) -> bool:
    """A label or annotation key: ``[prefix/]name``, the prefix a DNS subdomain."""
    prefix, _, name = key.rpartition("/")
    if prefix and not is_dns_subdomain(prefix):
        return False
    return len(name) <= DNS_LABEL_MAX and _QUALIFIED_NAME.fullmatch(name) is not None


def is_env_name(s: str) -> bool:
    """An environment variable name Kubernetes accepts."""
    return _ENV_NAME.fullmatch(s) is not None


def is_param_name(s: str) -> bool:
    """A parameter name ``$(params.NAME)`` can refer to."""
    return _PARAM_NAME.fullmatch(s) is not None


def is_image(s: str) -> bool:
    """A container image reference the kubelet can parse."""
    return _IMAGE.fullmatch(s) is not None


def parse_quantity(value: Any) -> Decimal | None:
    """A Kubernetes resource quantity (``500m``, ``4Gi``, ``1e3``, ``2``) as a Decimal.

    None when it is not one; exact, so ``1Gi`` and ``1024Mi`` compare equal.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if value == value and abs(value) != float("inf") else None
    if not isinstance(value, str):
        return None
    m = _QUANTITY.fullmatch(value)
    if m is None:
        return None
    number, suffix = m.group(1), m.group(2) or ""
    try:
        if suffix[:1] in ("e", "E"):
            return Decimal(number) * Decimal(10) ** Decimal(suffix[1:])
        return Decimal(number) * _SUFFIX[suffix]
    except (InvalidOperation, ArithmeticError, KeyError):
        return None
