"""Leader election on a `coordination.k8s.io/v1` Lease, as client-go does it.

Why a Lease and not kopf's peering: a Lease is the Kubernetes standard
(`kubectl get lease` shows who leads), needs no extra CRD, and fails over in
`lease_duration` seconds (15 by default) instead of kopf peering's 60 s
lifetime. Exactly one process per *scope* (the set of watched namespaces)
acts: the others wait in `acquire()` before the operator starts at all.

Expiry is judged the client-go way, on this process's own monotonic clock:
a lease is free when its record has not changed for `lease_duration`
seconds since we first saw it, so clock skew between replicas cannot make
two leaders. A leader that cannot renew within `renew_deadline` stops acting
(`on_lost`) and resumes when the lease is its own again (`on_regained`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

__all__ = ["LeaderElector", "default_lease_name", "default_lease_namespace", "new_identity"]

log = logging.getLogger(__name__)

_SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def default_lease_namespace() -> str:
    """The pod's own namespace in a cluster, else `default`."""
    try:
        with open(_SA_NAMESPACE) as f:
            return f.read().strip() or "default"
    except OSError:
        return "default"


def default_lease_name(namespaces: Sequence[str]) -> str:
    """One lease per scope: operators watching different namespaces don't compete."""
    if not namespaces:
        return "sluice-operator"
    digest = hashlib.sha256("\0".join(sorted(namespaces)).encode()).hexdigest()[:10]
    return f"sluice-operator-{digest}"


def new_identity() -> str:
    return f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:6]}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
    ) -> None:
        self.coord = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = min(renew_deadline, lease_duration)
        self.retry_period = retry_period
        self._observed: tuple[Any, float] | None = None  # (record, monotonic time first seen)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.is_leader = False

    # ------------------------------------------------------------------ one try
    def _try(self) -> bool:
        """One attempt to acquire or renew; True when we hold the lease after it."""
        spec_now = _now()
        try:
            lease = self.coord.read_namespaced_lease(self.name, self.namespace)
        except ApiException as e:
            if e.status != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": int(self.lease_duration),
                    "acquireTime": spec_now,
                    "renewTime": spec_now,
                    "leaseTransitions": 0,
                },
            }
            try:
                self.coord.create_namespaced_lease(self.namespace, body)
            except ApiException as e2:
                if e2.status == 409:
                    return False
                raise
            return True
        spec = lease.spec
        record = (spec.holder_identity, spec.renew_time, spec.lease_transitions)
        mono = time.monotonic()
        if self._observed is None or self._observed[0] != record:
            self._observed = (record, mono)
        holder = spec.holder_identity
        expired = mono - self._observed[1] >= (spec.lease_duration_seconds or self.lease_duration)
        if holder and holder != self.identity and not expired:
            return False
        transitions = spec.lease_transitions or 0
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "resourceVersion": lease.metadata.resource_version,
            },
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.lease_duration),
                "acquireTime": spec_now if holder != self.identity else _fmt(spec.acquire_time),
                "renewTime": spec_now,
                "leaseTransitions": transitions + (1 if holder != self.identity else 0),
            },
        }
        try:
            self.coord.replace_namespaced_lease(self.name, self.namespace, body)
        except ApiException as e:
            if e.status == 409:  # someone else wrote first
                return False
            raise
        return True

    # ------------------------------------------------------------------ loops
    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Block until we lead (True) or `stop` is set (False)."""
        stop = stop or self._stop
        waiting_logged = False
        while not stop.is_set():
            try:
                if self._try():
                    self.is_leader = True
                    log.info(
                        "leading (lease %s/%s as %s)", self.namespace, self.name, self.identity
                    )
                    return True
            except ApiException as e:
                log.warning("leader election: %s %s", e.status, e.reason)
                if e.status in (401, 403):
                    raise
            if not waiting_logged:
                log.info("another replica leads (lease %s/%s); waiting", self.namespace, self.name)
                waiting_logged = True
            stop.wait(self.retry_period)
        return False

    def keep_renewing(
        self,
        on_lost: Callable[[], None],
        on_regained: Callable[[], None] = lambda: None,
    ) -> None:
        """Renew in a background thread. Past `renew_deadline` without a renewal
        (API server unreachable, lease taken), call `on_lost` and keep trying:
        when the lease is ours again, call `on_regained`.

        Demoting instead of exiting means an API server restart costs a pause,
        not a process restart plus a full lease wait; it is as safe, because a
        demoted replica stops acting `lease_duration - renew_deadline` seconds
        before anyone else may take the lease over.
        """

        def loop() -> None:
            last_ok = time.monotonic()
            while not self._stop.wait(self.retry_period):
                try:
                    ok = self._try()
                except Exception as e:  # network trouble: retry until the deadline
                    log.warning("leader election: renewing failed: %s", e)
                    ok = False
                if ok:
                    last_ok = time.monotonic()
                    if not self.is_leader:
                        self.is_leader = True
                        log.warning("leading again (lease %s/%s)", self.namespace, self.name)
                        on_regained()
                    continue
                if self.is_leader and time.monotonic() - last_ok > self.renew_deadline:
                    log.error(
                        "leader election: no renewal for %.0fs: pausing until the lease is ours",
                        self.renew_deadline,
                    )
                    self.is_leader = False
                    on_lost()

        self._thread = threading.Thread(target=loop, name="sluice-leader", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """On a clean stop: hand the lease over at once instead of letting it expire."""
        self._stop.set()
        if not self.is_leader:
            return
        try:
            lease = self.coord.read_namespaced_lease(self.name, self.namespace)
            if lease.spec.holder_identity != self.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            self.coord.replace_namespaced_lease(self.name, self.namespace, lease)
            log.info("released lease %s/%s", self.namespace, self.name)
        except ApiException as e:
            log.warning("releasing the lease failed: %s %s", e.status, e.reason)
        self.is_leader = False


def _fmt(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return str(value)
