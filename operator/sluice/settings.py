"""The operator's settings: one frozen object, built once by the CLI.

Precedence: a flag given on the command line, then the environment, then the
default written here (each default exactly once: `sluice run --help` shows
these values). Nothing else reads flags or the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sluice.core.matrix import DEFAULT_MAX_MATRIX
from sluice.core.stuck import STUCK_AFTER

__all__ = ["ENV_STATUS_INTERVAL", "AdmissionMode", "Settings"]

AdmissionMode = Literal["off", "local", "cluster"]

ENV_STATUS_INTERVAL = "SLUICE_STATUS_INTERVAL"


@dataclass(frozen=True)
class Settings:
    namespaces: tuple[str, ...] = ()
    """Watched namespace patterns (kopf's syntax); empty: every namespace."""
    metrics_port: int = 9090
    metrics_address: str = "0.0.0.0"
    health_port: int = 8080
    """/healthz port; 0 disables it."""
    watch_timeout: float = 70.0
    """Seconds without any event or bookmark after which a watch is reconnected."""
    status_interval: float = 1.0
    """Least seconds between two progress writes of one pipeline's status."""
    status_writers: int = 4
    """Status writes and Events in flight at once, all pipelines together."""
    stuck_after: float = STUCK_AFTER
    """Seconds a step's attempt may run without its pod running before it is looked at."""
    max_matrix: int = DEFAULT_MAX_MATRIX
    """Combinations one matrixed step may have (the webhook's and the operator's cap)."""
    leader_elect: bool = True
    leader_election_namespace: str | None = None
    """The Lease's namespace; None: the pod's own, else ``default``."""
    leader_election_id: str | None = None
    """The Lease's name; None: derived from the watched namespaces."""
    lease_duration: float = 15.0
    admission: AdmissionMode = "off"
    webhook_port: int | None = None
    """None: any free port for ``local``, 9443 for ``cluster``."""
    webhook_address: str | None = None
    """None: 127.0.0.1 for ``local``, 0.0.0.0 for ``cluster``."""
    webhook_cert_file: Path | None = None
    webhook_key_file: Path | None = None
    webhook_ca_file: Path | None = None
    log_level: str = "INFO"
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    """Only what was read from the environment (for messages and tests)."""

    @property
    def renew_deadline(self) -> float:
        return self.lease_duration * 2 / 3

    @property
    def retry_period(self) -> float:
        return max(self.lease_duration / 7.5, 0.2)

    @classmethod
    def build(cls, flags: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
        """From parsed flags (None: not given) and the environment (default: os.environ)."""
        env = os.environ if environ is None else environ
        given = {k: v for k, v in flags.items() if v is not None and k in _FIELDS}
        read: dict[str, str] = {}
        if "status_interval" not in given and env.get(ENV_STATUS_INTERVAL) is not None:
            read[ENV_STATUS_INTERVAL] = env[ENV_STATUS_INTERVAL]
            given["status_interval"] = float(env[ENV_STATUS_INTERVAL])
        if "status_interval" in given:
            given["status_interval"] = max(float(given["status_interval"]), 0.0)
        if "namespaces" in given:
            given["namespaces"] = tuple(given["namespaces"])
        return cls(**given, environ=read)


_FIELDS = frozenset(Settings.__dataclass_fields__) - {"environ"}
