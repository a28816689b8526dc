"""The few API calls Sluice makes, as raw JSON over one asyncio HTTP session.

Why not the official client on the hot path: it is synchronous, so its calls
had to run in a thread pool, and the benchmark (bench/README.md) found most
of the operator's CPU there: per-call pydantic argument validation, urllib3,
GIL hand-offs between threads, and new TLS handshakes whenever a response was
not read back into the pool. This client is aiohttp (already kopf's), runs
on kopf's event loop, keeps its TLS connections alive and sends and reads
plain dicts. It makes every call Sluice makes itself: Jobs, Pipeline status,
Events, the leader election's Lease and (``--admission local``) the webhook
registration. The official client only *loads the configuration*, once
(in-cluster service account or kubeconfig, exec plugins and token refresh
included): kopf logs in from that same configuration (sluice.shell.handlers).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
from kubernetes import client

from sluice.api import GROUP, PIPELINE_KIND, PIPELINE_PLURAL, VERSION, rfc3339
from sluice.shell.kubeconfig import load_config, ssl_context

__all__ = ["ApiError", "Kube", "load_config"]

log = logging.getLogger(__name__)

_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=10)
_AUTH_REFRESH = 30.0
"""Seconds between two reads of the credentials (projected service-account tokens
rotate long before they expire, exec-plugin tokens say when they expire)."""


_EVENT_CACHE = 4096
"""Events remembered for aggregation (client-go's correlator keeps 4096 too)."""


_JOBS, _PODS = "/apis/batch/v1/namespaces/{}/jobs", "/api/v1/namespaces/{}/pods"


class ApiError(Exception):
    """A refused API call: the HTTP status, its reason and the Status body."""

    def __init__(self, status: int, reason: str, body: str = "") -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.body = body

    @property
    def message(self) -> str:
        """The API server's own words (the Status body's message), else status and reason."""
        try:
            message = json.loads(self.body or "").get("message")
        except (AttributeError, TypeError, ValueError):
            message = None
        return str(message) if message else f"{self.status} {self.reason}"


class Kube:
    """Job, status and Event calls: asyncio, raw JSON, one keep-alive connection pool.

    Create the object anywhere; its HTTP session is opened on first use, on
    the running event loop (kopf's), and closed by :meth:`close`.
    """

    def __init__(
        self, cfg: client.Configuration, component: str = "sluice", connections: int = 32
    ) -> None:
        self.cfg = cfg
        self.base = cfg.host.rstrip("/")
        self.component = component
        self._events: OrderedDict[tuple[str, ...], tuple[str, str, int]] = OrderedDict()
        """Events posted lately, by (object uid, type, reason, message): (namespace,
        name, count). A repeat increments the existing Event's count (`post_event`)."""
        self.connections = connections
        self._ssl: ssl.SSLContext | None = (
            ssl_context(cfg) if self.base.startswith("https") else None
        )
        self._auth: dict[str, str] | None = None
        self._auth_at = 0.0
        self._session: aiohttp.ClientSession | None = None
        self._watch_session: aiohttp.ClientSession | None = None

    def _new_session(self, limit: int) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            ssl=self._ssl if self._ssl is not None else False, limit=limit, keepalive_timeout=60
        )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=_TIMEOUT,
            headers={"User-Agent": f"{self.component}-operator", "Accept": "application/json"},
        )

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = self._new_session(self.connections)
        return self._session

    def _get_watch_session(self) -> aiohttp.ClientSession:
        # Watches hold their connection for minutes: never from the calls' pool.
        if self._watch_session is None or self._watch_session.closed:
            self._watch_session = self._new_session(0)
        return self._watch_session

    async def close(self) -> None:
        for session in (self._session, self._watch_session):
            if session is not None:
                await session.close()
        self._session = self._watch_session = None

    def _read_auth(self) -> dict[str, str]:
        # Calls the configuration's refresh hook: rotated service-account tokens
        # and expiring exec-plugin tokens are re-read as the official client would.
        token = self.cfg.get_api_key_with_prefix("BearerToken", alias="authorization")
        if token:
            return {"Authorization": token}
        if self.cfg.username or self.cfg.password:
            basic = self.cfg.get_basic_auth_token()
            return {"Authorization": basic} if basic else {}
        return {}

    async def _auth_headers(self) -> dict[str, str]:
        """The credentials, read again every `_AUTH_REFRESH` seconds in a thread: the
        refresh hook may read a file or run an exec plugin, never on the event loop."""
        now = time.monotonic()
        if self._auth is None or now - self._auth_at >= _AUTH_REFRESH:
            self._auth = await asyncio.to_thread(self._read_auth)
            self._auth_at = now
        return dict(self._auth)

    async def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
        decode: bool = True,
    ) -> dict[str, Any]:
        headers = await self._auth_headers()
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body, separators=(",", ":")).encode()
        async with self._get_session().request(
            method,
            self.base + path,
            data=data,
            params=params,
            headers=headers,
            proxy=self.cfg.proxy or None,
            server_hostname=self.cfg.tls_server_name or None,
        ) as resp:
            raw = await resp.read()
            if resp.status >= 400:
                raise ApiError(resp.status, resp.reason or "", raw.decode(errors="replace"))
        if not raw or not decode:
            return {}  # read to the end either way: the connection goes back to the pool
        result: dict[str, Any] = json.loads(raw)
        return result

    # ------------------------------------------------------------------ list and watch
    async def list_jobs(
        self, namespace: str, selector: str, limit: int = 500, continue_: str | None = None
    ) -> dict[str, Any]:
        """One page of the namespace's Jobs matching ``selector``."""
        return await self._list(_JOBS.format(quote(namespace)), selector, limit, continue_)

    async def list_pods(
        self,
        namespace: str,
        selector: str,
        limit: int = 500,
        continue_: str | None = None,
        fields: str = "",
    ) -> dict[str, Any]:
        """One page of the namespace's pods matching ``selector`` (and ``fields``)."""
        return await self._list(_PODS.format(quote(namespace)), selector, limit, continue_, fields)

    def watch_jobs(
        self, namespace: str, selector: str, resource_version: str, idle_timeout: float
    ) -> AsyncIterator[dict[str, Any]]:
        return self._watch(_JOBS.format(quote(namespace)), selector, resource_version, idle_timeout)

    def watch_pods(
        self,
        namespace: str,
        selector: str,
        resource_version: str,
        idle_timeout: float,
        fields: str = "",
    ) -> AsyncIterator[dict[str, Any]]:
        path = _PODS.format(quote(namespace))
        return self._watch(path, selector, resource_version, idle_timeout, fields)

    async def _list(
        self, path: str, selector: str, limit: int, continue_: str | None, fields: str = ""
    ) -> dict[str, Any]:
        params = {"labelSelector": selector, "limit": str(limit)}
        if fields:
            params["fieldSelector"] = fields
        if continue_:
            params["continue"] = continue_
        return await self._request("GET", path, params=params)

    async def _watch(
        self, path: str, selector: str, resource_version: str, idle_timeout: float, fields: str = ""
    ) -> AsyncIterator[dict[str, Any]]:
        """Watch events (bookmarks included) after ``resource_version``, until the
        server ends the stream (after 5 minutes) or nothing arrives for
        ``idle_timeout`` seconds (the server bookmarks about every minute).
        An ERROR event is raised as :class:`ApiError` (410: start again from a list)."""
        params = {
            "watch": "true",
            "labelSelector": selector,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "300",
        }
        if fields:
            params["fieldSelector"] = fields
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=idle_timeout)
        async with self._get_watch_session().get(
            f"{self.base}{path}",
            params=params,
            headers=await self._auth_headers(),
            timeout=timeout,
            proxy=self.cfg.proxy or None,
            server_hostname=self.cfg.tls_server_name or None,
        ) as resp:
            if resp.status >= 400:
                body = (await resp.read()).decode(errors="replace")
                raise ApiError(resp.status, resp.reason or "", body)
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                if b"\n" not in chunk:
                    continue
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    event: dict[str, Any] = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        raise ApiError(
                            int(status.get("code") or 500),
                            str(status.get("reason") or ""),
                            json.dumps(status),
                        )
                    yield event

    # ------------------------------------------------------------------ calls
    async def create_job(self, namespace: str, manifest: dict[str, Any]) -> None:
        """Create a Job with strict field validation: a field the API server does not
        know is refused with its own message rather than silently dropped."""
        # The created Job comes back through the watch; decoding it here too was
        # a tenth of the operator's JSON work in the benchmarks.
        await self._request(
            "POST",
            f"/apis/batch/v1/namespaces/{quote(namespace)}/jobs",
            manifest,
            params={"fieldValidation": "Strict"},
            decode=False,
        )

    async def list_events(self, namespace: str, fields: str) -> dict[str, Any]:
        """One page (at most 100) of the namespace's Events matching the field selector."""
        path = f"/api/v1/namespaces/{quote(namespace)}/events"
        return await self._request("GET", path, params={"fieldSelector": fields, "limit": "100"})

    async def read_job(self, namespace: str, name: str) -> dict[str, Any]:
        return await self._request(
            "GET", f"/apis/batch/v1/namespaces/{quote(namespace)}/jobs/{quote(name)}"
        )

    async def delete_job(self, namespace: str, name: str) -> None:
        await self._request(
            "DELETE",
            f"/apis/batch/v1/namespaces/{quote(namespace)}/jobs/{quote(name)}",
            {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"},
            decode=False,
        )

    async def patch_status(
        self, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch the status subresource; returns the updated Pipeline."""
        return await self._request(
            "PATCH",
            f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace)}/{PIPELINE_PLURAL}"
            f"/{quote(name)}/status",
            {"status": patch},
            content_type="application/merge-patch+json",
        )

    async def post_event(
        self, pipeline: dict[str, Any], type_: str, reason: str, message: str
    ) -> None:
        """Post an Event; the same Event again (same object, type, reason and message)
        increments the count and lastTimestamp of the one posted before, as client-go's
        event recorder does, instead of making another object (a Job create refused
        by a full quota is refused again at every backoff)."""
        meta = pipeline.get("metadata") or {}
        now = rfc3339(datetime.now(UTC))
        namespace = meta.get("namespace") or "default"
        key = (str(meta.get("uid") or ""), type_, reason, message[:1024])
        seen = self._events.get(key)
        if seen is not None:
            ns, name, count = seen
            patch = {"count": count + 1, "lastTimestamp": now}
            try:
                await self._request(
                    "PATCH",
                    f"/api/v1/namespaces/{quote(ns)}/events/{quote(name)}",
                    patch,
                    content_type="application/merge-patch+json",
                )
            except ApiError as e:
                if e.status != 404:
                    raise
                del self._events[key]  # expired (the API server's event TTL): post anew
            else:
                self._events[key] = (ns, name, count + 1)
                self._events.move_to_end(key)
                return
        name = f"{meta.get('name', 'pipeline')[:200]}.{uuid.uuid4().hex[:12]}"
        self._events[key] = (namespace, name, 1)
        while len(self._events) > _EVENT_CACHE:
            self._events.popitem(last=False)
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": name,
                "namespace": namespace,
            },
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": PIPELINE_KIND,
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "reportingInstance": self.component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self._request("POST", f"/api/v1/namespaces/{quote(namespace)}/events", body)
        except BaseException:
            self._events.pop(key, None)
            raise

    # ------------------------------------------------------------------ leases
    def _lease_path(self, namespace: str, name: str = "") -> str:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{quote(namespace)}/leases"
        return f"{path}/{quote(name)}" if name else path

    async def read_lease(self, namespace: str, name: str) -> dict[str, Any]:
        return await self._request("GET", self._lease_path(namespace, name))

    async def create_lease(self, namespace: str, lease: dict[str, Any]) -> dict[str, Any]:
        return await self._request("POST", self._lease_path(namespace), lease)

    async def replace_lease(
        self, namespace: str, name: str, lease: dict[str, Any]
    ) -> dict[str, Any]:
        """PUT: refused with 409 unless ``metadata.resourceVersion`` is still current."""
        return await self._request("PUT", self._lease_path(namespace, name), lease)

    # ------------------------------------------------------------------ webhook registration
    _VWC = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"

    async def read_webhook_configuration(self, name: str) -> dict[str, Any]:
        return await self._request("GET", f"{self._VWC}/{quote(name)}")

    async def create_webhook_configuration(self, body: dict[str, Any]) -> None:
        await self._request("POST", self._VWC, body, decode=False)

    async def replace_webhook_configuration(self, name: str, body: dict[str, Any]) -> None:
        await self._request("PUT", f"{self._VWC}/{quote(name)}", body, decode=False)

    async def delete_webhook_configuration(self, name: str) -> None:
        await self._request("DELETE", f"{self._VWC}/{quote(name)}", decode=False)
