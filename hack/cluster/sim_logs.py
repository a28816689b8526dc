#!/usr/bin/env python3
"""The simulated containers' output, for the local cluster's kwok nodes.

kwok serves `kubectl logs` from files named by its `Logs` resources; nothing in kwok
writes those files. This component (started by cluster.py, like the others) watches
the pods and, for each pod bound to a node:

* creates a CRI-format log file per container under `<state>/sim-logs/` and a `Logs`
  object (same name and namespace as the pod, owned by it, so the garbage collector
  removes it with the pod) pointing kwok at them;
* once the pod runs, writes what its container "prints": the container's command
  line (`+ cmd args`); for the `main` container the text of the annotation
  `sim.sluice.dev/log` (one line per line), and, for a pod labelled
  `sim.sluice.dev/outcome: fail`, the exit code it fails with;
* removes the files when the pod is deleted.

Standard library only, like cluster.py. It reconnects by itself when the API server
goes away (fault tests restart it) and re-lists after a watch ends.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import shutil
import ssl
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOG_ANNOTATION = "sim.sluice.dev/log"
OUTCOME_LABEL = "sim.sluice.dev/outcome"
EXIT_CODE_ANNOTATION = "sim.sluice.dev/exit-code"
REASON_ANNOTATION = "sim.sluice.dev/reason"
LOGS_API = "/apis/kwok.x-k8s.io/v1alpha1"


class Writer:
    def __init__(self, server: str, ctx: ssl.SSLContext, root: Path) -> None:
        self.server = server
        self.ctx = ctx
        self.root = root
        self.bound: set[str] = set()  # uids with files and a Logs object
        self.written: set[str] = set()  # uids whose lines are written
        self.dirs: dict[str, Path] = {}

    # --- API ------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None, timeout: float = 10) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as r:
            return json.loads(r.read() or b"{}")

    def run(self) -> None:
        while True:
            try:
                rv = self._relist()
                self._watch(rv)
            except (OSError, urllib.error.URLError, ValueError, KeyError) as e:
                log(f"reconnecting after: {e}")
                time.sleep(1)

    def _relist(self) -> str:
        listing = self._request("GET", "/api/v1/pods", timeout=60)
        uids = set()
        for pod in listing.get("items") or []:
            uids.add(pod["metadata"]["uid"])
            self.handle(pod)
        for uid in list(self.dirs):
            if uid not in uids:
                self._forget(uid)
        return str(listing["metadata"]["resourceVersion"])

    def _watch(self, rv: str) -> None:
        path = f"/api/v1/pods?watch=1&resourceVersion={rv}&timeoutSeconds=300"
        req = urllib.request.Request(self.server + path)
        with urllib.request.urlopen(req, context=self.ctx, timeout=330) as r:
            for line in r:
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    return  # e.g. 410 Gone: re-list
                pod = event.get("object") or {}
                if event.get("type") == "DELETED":
                    self._forget(pod["metadata"]["uid"])
                else:
                    self.handle(pod)

    # --- pods -------------------------------------------------------------------------

    def handle(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        uid = meta["uid"]
        if not spec.get("nodeName") or (meta.get("deletionTimestamp") and uid not in self.bound):
            return
        if uid not in self.bound:
            self._bind(pod)
        phase = (pod.get("status") or {}).get("phase")
        if (
            uid in self.bound
            and uid not in self.written
            and phase
            in (
                "Running",
                "Succeeded",
                "Failed",
            )
        ):
            self._write(pod)

    def _files(self, pod: dict[str, Any]) -> dict[str, Path]:
        meta = pod["metadata"]
        d = self.root / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"
        return {c["name"]: d / f"{c['name']}.log" for c in pod["spec"].get("containers") or []}

    def _bind(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        files = self._files(pod)
        for f in files.values():
            f.parent.mkdir(parents=True, exist_ok=True)
            f.touch()
        self.dirs[meta["uid"]] = next(iter(files.values())).parent if files else self.root
        body = {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "Logs",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}
                ],
            },
            "spec": {
                "logs": [
                    {"containers": [name], "logsFile": str(path), "follow": True}
                    for name, path in files.items()
                ]
            },
        }
        try:
            self._request("POST", f"{LOGS_API}/namespaces/{meta['namespace']}/logs", body)
        except urllib.error.HTTPError as e:
            if e.code == 409:  # left from a pod of the same name: point it at this one
                current = self._request(
                    "GET", f"{LOGS_API}/namespaces/{meta['namespace']}/logs/{meta['name']}"
                )
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                self._request(
                    "PUT", f"{LOGS_API}/namespaces/{meta['namespace']}/logs/{meta['name']}", body
                )
            elif e.code in (403, 404):  # namespace going away, pod gone
                return
            else:
                raise
        self.bound.add(meta["uid"])

    def _write(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        annotations = meta.get("annotations") or {}
        labels = meta.get("labels") or {}
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for container in pod["spec"].get("containers") or []:
            argv = [*(container.get("command") or []), *(container.get("args") or [])]
            lines = [f"+ {shlex.join(argv)}" if argv else f"+ ({container.get('image')})"]
            if container["name"] == "main":
                text = annotations.get(LOG_ANNOTATION)
                if text:
                    lines += str(text).splitlines()
                if labels.get(OUTCOME_LABEL) == "fail":
                    code = annotations.get(EXIT_CODE_ANNOTATION) or "1"
                    reason = annotations.get(REASON_ANNOTATION) or "Error"
                    lines.append(f"sim: failing with exit code {code} ({reason})")
            path = self._files(pod).get(container["name"])
            if path is None:
                continue
            with contextlib.suppress(OSError), path.open("a") as f:
                f.write("".join(f"{now} stdout F {line}\n" for line in lines))
        self.written.add(meta["uid"])

    def _forget(self, uid: str) -> None:
        self.bound.discard(uid)
        self.written.discard(uid)
        d = self.dirs.pop(uid, None)
        if d is not None and d != self.root:
            shutil.rmtree(d, ignore_errors=True)


def log(msg: str) -> None:
    print(f"[sim-logs] {msg}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--server", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--dir", required=True, type=Path)
    a = p.parse_args(argv)
    ctx = ssl.create_default_context(cafile=a.ca)
    ctx.load_cert_chain(a.cert, a.key)
    a.dir.mkdir(parents=True, exist_ok=True)
    log(f"writing simulated container logs under {a.dir}")
    Writer(a.server.rstrip("/"), ctx, a.dir).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
