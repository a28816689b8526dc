"""Leader election on a `coordination.k8s.io/v1` Lease, as client-go does it.

Why a Lease and not kopf's peering: a Lease is the Kubernetes standard
(`kubectl get lease` shows who leads), needs no extra CRD, and fails over in
`lease_duration` seconds (15 by default) instead of kopf peering's 60 s
lifetime. Exactly one process per *scope* (the set of watched namespaces,
:mod:`sluice.shell.scope`) acts.

Leadership gates only the controller's workers: every replica runs its
watches, caches, health endpoint, metrics and webhook from the start, so a
standby that takes over acts at once on warm caches. The elector is one
asyncio task on the operator's own client (:class:`~sluice.shell.kube.Kube`):
three calls, read, create and replace of one Lease. It says what happens
through two callbacks, `on_started` (this replica leads) and `on_stopped`
(it no longer does).

Expiry is judged the client-go way, on this process's own monotonic clock:
a lease is free when its record has not changed for `lease_duration`
seconds since we first saw it, so clock skew between replicas cannot make
two leaders. A leader that cannot renew within `renew_deadline` stops acting
and resumes when the lease is its own again. Demoting instead of exiting
means an API server restart costs a pause, not a process restart plus a full
lease wait; it is as safe, because a demoted replica stops acting
`lease_duration - renew_deadline` seconds before anyone else may take the
lease over.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sluice.shell.kube import ApiError, Kube

__all__ = ["LeaseElector", "default_lease_namespace", "micro_time", "new_identity"]

log = logging.getLogger(__name__)

_SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def default_lease_namespace() -> str:
    """The pod's own namespace in a cluster, else `default`."""
    try:
        with open(_SA_NAMESPACE) as f:
            return f.read().strip() or "default"
    except OSError:
        return "default"


def new_identity() -> str:
    return f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:6]}"


def micro_time(when: datetime | None = None) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds), as Lease times are."""
    return (when or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    """Acquire, renew and release one Lease; `run()` is the task that does it."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        on_started: Callable[[], None] = lambda: None,
        on_stopped: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = min(renew_deadline, lease_duration)
        self.retry_period = retry_period
        self.on_started = on_started
        self.on_stopped = on_stopped
        self.clock = clock
        self._observed: tuple[Any, float] | None = None  # (record, monotonic time first seen)
        self.is_leader = False

    def _lease(self, spec: dict[str, Any], resource_version: str | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if resource_version is not None:
            meta["resourceVersion"] = resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": spec,
        }

    # ------------------------------------------------------------------ one try
    async def try_once(self) -> bool:
        """One attempt to acquire or renew; True when we hold the lease after it."""
        now = micro_time()
        try:
            lease = await self.kube.read_lease(self.namespace, self.name)
        except ApiError as e:
            if e.status != 404:
                raise
            return await self._create(now)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        record = (holder, spec.get("renewTime"), spec.get("leaseTransitions"))
        mono = self.clock()
        if self._observed is None or self._observed[0] != record:
            self._observed = (record, mono)
        duration = spec.get("leaseDurationSeconds") or self.lease_duration
        expired = mono - self._observed[1] >= duration
        if holder and holder != self.identity and not expired:
            return False
        mine = holder == self.identity
        body = self._lease(
            {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.lease_duration),
                "acquireTime": spec.get("acquireTime") if mine else now,
                "renewTime": now,
                "leaseTransitions": (spec.get("leaseTransitions") or 0) + (0 if mine else 1),
            },
            (lease.get("metadata") or {}).get("resourceVersion"),
        )
        try:
            await self.kube.replace_lease(self.namespace, self.name, body)
        except ApiError as e:
            if e.status == 409:  # someone else wrote first
                return False
            raise
        return True

    async def _create(self, now: str) -> bool:
        body = self._lease(
            {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.lease_duration),
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            }
        )
        try:
            await self.kube.create_lease(self.namespace, body)
        except ApiError as e:
            if e.status == 409:
                return False
            raise
        return True

    # ------------------------------------------------------------------ the task
    async def run(self) -> None:
        """Try every `retry_period` seconds, for ever (cancel to stop; then `release`)."""
        last_ok = -float("inf")
        waiting_logged = False
        while True:
            try:
                ok = await self.try_once()
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                level = logging.ERROR if e.status in (401, 403) else logging.WARNING
                log.log(level, "leader election: %s", e.message)
                ok = False
            except Exception as e:  # network trouble: retry until the deadline
                log.warning("leader election: %r", e)
                ok = False
            if ok:
                last_ok = self.clock()
                if not self.is_leader:
                    self.is_leader = True
                    log.info(
                        "leading (lease %s/%s as %s)", self.namespace, self.name, self.identity
                    )
                    self.on_started()
            elif self.is_leader and self.clock() - last_ok > self.renew_deadline:
                log.error(
                    "leader election: no renewal for %.0fs: pausing until the lease is ours",
                    self.renew_deadline,
                )
                self.is_leader = False
                self.on_stopped()
            elif not self.is_leader and not waiting_logged:
                log.info("another replica leads (lease %s/%s); waiting", self.namespace, self.name)
                waiting_logged = True
            await asyncio.sleep(self.retry_period)

    async def release(self) -> None:
        """On a clean stop: hand the lease over at once instead of letting it expire."""
        if not self.is_leader:
            return
        self.is_leader = False
        self.on_stopped()
        try:
            lease = await self.kube.read_lease(self.namespace, self.name)
            spec = dict(lease.get("spec") or {})
            if spec.get("holderIdentity") != self.identity:
                return
            spec.pop("holderIdentity", None)
            spec["leaseDurationSeconds"] = 1
            await self.kube.replace_lease(self.namespace, self.name, {**lease, "spec": spec})
            log.info("released lease %s/%s", self.namespace, self.name)
        except Exception as e:  # the API server may be gone at shutdown
            log.warning("releasing the lease failed: %r", e)
