"""``kubectl sluice logs``: the log of a step's pod (its latest or a given attempt), of
every step (each line prefixed ``[step]``), or of the failed ones; ``-f`` follows the
steps as they run, attempt after attempt, and ends when there is nothing more to come.

Following does not rely on the log stream ending with the container (kwok's simulated
kubelet never ends it): it watches the pod, and once the pod has finished it closes the
stream and prints whatever the full log holds beyond what was already shown.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, Final

import urllib3

from sluice.core import naming
from sluice.kubectl_sluice import render
from sluice.kubectl_sluice.kube import Conn, UserError

__all__ = ["run"]

POLL: Final = 0.5
"""Seconds between two looks at a pod or the pipeline while following."""
_DONE_PODS: Final = ("Succeeded", "Failed")
_PALETTE: Final = ("\x1b[36m", "\x1b[35m", "\x1b[33m", "\x1b[32m", "\x1b[34m", "\x1b[91m")


class _Out:
    """Serialised output, each line prefixed with its step when several are shown."""

    def __init__(self, prefixed: bool, color: bool) -> None:
        self.prefixed = prefixed
        self.color = color
        self.lock = threading.Lock()
        self.colors: dict[str, str] = {}

    def _prefix(self, step: str) -> str:
        if not self.prefixed:
            return ""
        if not self.color:
            return f"[{step}] "
        code = self.colors.setdefault(step, _PALETTE[len(self.colors) % len(_PALETTE)])
        return f"{code}[{step}]\x1b[0m "

    def lines(self, step: str, text: str) -> None:
        if not text:
            return
        body = text if text.endswith("\n") else text + "\n"
        prefix = self._prefix(step)
        with self.lock:
            sys.stdout.write("".join(prefix + line + "\n" for line in body.splitlines()))
            sys.stdout.flush()

    def note(self, step: str, text: str) -> None:
        """A line about the logs (not from them): on stderr."""
        with self.lock:
            sys.stdout.flush()
            sys.stderr.write(f"{self._prefix(step)}--- {text} ---\n")
            sys.stderr.flush()


def _selector(v: render.PipelineView, step: str, attempt: int) -> str:
    labels = naming.job_labels(v.name, step, v.run, attempt)
    return ",".join(f"{k}={val}" for k, val in labels.items())


def _pod(conn: Conn, ns: str, v: render.PipelineView, step: str, attempt: int) -> Any:
    pods = conn.list_pods(ns, _selector(v, step, attempt))
    if not pods:
        return None
    return max(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")


def _pod_phase(pod: Any) -> str:
    return str((pod or {}).get("status", {}).get("phase") or "Pending")


def _no_pods(v: render.PipelineView, s: render.Step) -> str:
    if s.phase == "Blocked":
        why = render.step_message(v, s, render_now())
        return f"step {s.name} has no pods: it never started ({why})"
    if s.phase == "Skipped":
        return (
            f"step {s.name} has no pods: it was skipped ({render.one_line(s.message) or s.reason})"
        )
    if s.attempts == 0:
        return f"step {s.name} has no pods yet: it is {s.phase}" + (
            " (the pipeline is suspended)" if v.suspend else ""
        )
    return f"step {s.name} has no pods"


def render_now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _find_step(v: render.PipelineView, name: str) -> render.Step:
    s = v.step(name)
    if s is not None:
        return s
    names = [x.name for x in v.steps]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f' (did you mean "{close[0]}"?)' if close else f" (its steps: {', '.join(names[:8])})"
    raise UserError(f'pipeline "{v.name}" has no step "{name}"{hint}')


def _read(conn: Conn, ns: str, pod: str, container: str, step: str) -> str:
    try:
        resp = conn.pod_log(ns, pod, container)
    except Exception as e:
        raise UserError(_log_error(e, pod, step)) from None
    return resp.data.decode(errors="replace")


def _log_error(e: Exception, pod: str, step: str) -> str:
    import json

    from kubernetes import client

    if isinstance(e, client.ApiException):
        try:
            message = json.loads(e.body or "{}").get("message") or e.reason
        except ValueError:
            message = (e.body or e.reason or "").strip()
        return f"no logs for step {step} (pod {pod}): {message}"
    return f"cannot read the logs of step {step} (pod {pod}): {e}"


def _ordered(v: render.PipelineView) -> list[render.Step]:
    rows = [*render.layout(v.main_steps), *render.layout(v.finally_steps)]  # finally last
    return [row.step for row in rows]


def run(conn: Conn, ns: str, args: argparse.Namespace) -> int:
    v = render.view(conn.get_pipeline(ns, args.pipeline))
    if args.attempt is not None and args.step is None:
        raise UserError("--attempt needs a STEP")
    steps = [_find_step(v, args.step)] if args.step is not None else _ordered(v)
    if args.failed:
        steps = [s for s in steps if s.phase in ("Failed", "Retrying")]
        if not steps:
            if args.step:
                phase = _find_step(v, args.step).phase
                print(f"Step {args.step} has not failed (phase {phase}).", file=sys.stderr)
            else:
                print(f"No step of {v.name} has failed (phase {v.phase or '-'}).", file=sys.stderr)
            return 0
    color = sys.stdout.isatty() and not __import__("os").environ.get("NO_COLOR")
    out = _Out(prefixed=args.step is None, color=color)
    if args.follow:
        return _follow(conn, ns, v, [s.name for s in steps], args, out)
    single = args.step is not None
    shown = 0
    for s in steps:
        attempt = args.attempt or s.attempts
        if args.attempt and args.attempt > s.attempts:
            raise UserError(f"step {s.name} has had {s.attempts} attempts, not {args.attempt}")
        if attempt == 0:
            if single:
                raise UserError(_no_pods(v, s))
            continue
        pod = _pod(conn, ns, v, s.name, attempt)
        if pod is None:
            message = (
                f"the pod of step {s.name}, attempt {attempt}, is gone (its Job was deleted, "
                "e.g. by ttlSecondsAfterFinished)"
            )
            if single:
                raise UserError(message)
            out.note(s.name, message)
            continue
        name = pod["metadata"]["name"]
        try:
            text = _read(conn, ns, name, args.container, s.name)
        except UserError as e:
            if single:
                raise
            out.note(s.name, str(e))
            continue
        out.lines(s.name, text)
        shown += 1
    if not shown and not single:
        raise UserError(f"no step of {v.name} has started yet, so there are no logs")
    return 0


# ----------------------------------------------------------------------------- follow


class _Tracker:
    """The pipeline as last seen, refreshed by a thread every POLL seconds."""

    def __init__(self, conn: Conn, ns: str, first: render.PipelineView) -> None:
        self.conn, self.ns = conn, ns
        self.view = first
        self.deleted = False
        self.stop = threading.Event()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while not self.stop.wait(POLL):
            try:
                self.view = render.view(self.conn.get_pipeline(self.ns, self.view.name))
            except UserError as e:
                if "not found" in str(e):
                    self.deleted = True
                    return
            except Exception:
                continue


class _Stream:
    """One pod's log, streamed by a thread; ``finish`` stops it and prints the rest."""

    def __init__(self, conn: Conn, ns: str, pod: str, container: str, step: str, out: _Out):
        self.conn, self.ns, self.pod, self.container, self.step = conn, ns, pod, container, step
        self.out = out
        self.offset = 0  # bytes of the log already printed
        self.lock = threading.Lock()
        self.closed = False
        self.resp: urllib3.HTTPResponse | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            self.resp = self.conn.pod_log(self.ns, self.pod, self.container, follow=True)
        except Exception:
            return  # no logs yet (e.g. container not started): finish() catches up
        buf = b""
        try:
            for chunk in self.resp.stream(4096, decode_content=True):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    with self.lock:
                        if self.closed:
                            return
                        self.out.lines(self.step, line.decode(errors="replace"))
                        self.offset += len(line) + 1
        except Exception:
            return

    def finish(self) -> None:
        with self.lock:
            self.closed = True
            offset = self.offset
        if self.resp is not None:
            try:
                self.resp.shutdown()
                self.resp.release_conn()
            except Exception:
                pass
        try:
            data = self.conn.pod_log(self.ns, self.pod, self.container).data
        except Exception:
            return
        rest = data[offset:]
        if rest:
            self.out.lines(self.step, rest.decode(errors="replace"))


def _follow(
    conn: Conn,
    ns: str,
    first: render.PipelineView,
    names: Sequence[str],
    args: argparse.Namespace,
    out: _Out,
) -> int:
    tracker = _Tracker(conn, ns, first)
    single = args.step is not None
    errors: list[str] = []

    def follow_step(name: str) -> None:
        try:
            _follow_step(conn, ns, tracker, name, args, out, single)
        except UserError as e:
            errors.append(str(e))

    threads = [threading.Thread(target=follow_step, args=(n,), daemon=True) for n in names]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(0.2)
    finally:
        tracker.stop.set()
    if tracker.deleted:
        raise UserError(f'pipeline "{first.name}" was deleted')
    if errors:
        raise UserError(errors[0])
    return 0


def _nothing_more(
    v: render.PipelineView,
    s: render.Step,
    attempt: int | None,
    started: bool,
    streamed_it: bool,
    single: bool,
) -> bool:
    """Whether a step that has not started (or whose attempt was streamed) is done with;
    a single step that settled without ever starting is an error."""
    finished = s.phase in ("Succeeded", "Failed", "Blocked", "Skipped")
    if attempt and streamed_it:
        return True
    if (started and finished) or (v.settled and s.phase != "Running"):
        if not started and single:
            raise UserError(_no_pods(v, s))
        return True
    return False


def _stream_pod(
    conn: Conn,
    ns: str,
    tracker: _Tracker,
    run: int,
    pod_name: str,
    args: argparse.Namespace,
    name: str,
    out: _Out,
) -> dict[str, Any] | None:
    """Stream one pod's log until it ends, the pipeline goes or a rerun replaces ``run``;
    the pod as last seen (None once it is gone)."""
    stream = _Stream(conn, ns, pod_name, args.container, name, out)
    while True:
        current = conn.get_pod(ns, pod_name)
        if current is None or _pod_phase(current) in _DONE_PODS or tracker.deleted:
            break
        if tracker.view.run != run:
            break  # a rerun replaced this run
        time.sleep(POLL)
    stream.finish()
    return current


def _note_failed(out: _Out, name: str, target: int, pod: dict[str, Any] | None) -> None:
    state = ((pod or {}).get("status") or {}).get("containerStatuses") or [{}]
    term = (state[0].get("state") or {}).get("terminated") or {}
    code = term.get("exitCode")
    out.note(
        name,
        f"{name}: attempt {target} failed"
        + (f" (exit code {code}, {term.get('reason') or 'Error'})" if code is not None else ""),
    )


def _follow_step(
    conn: Conn,
    ns: str,
    tracker: _Tracker,
    name: str,
    args: argparse.Namespace,
    out: _Out,
    single: bool,
) -> None:
    streamed: set[tuple[int, int]] = set()  # (run, attempt)
    waiting_said = False
    while not tracker.deleted:
        v = tracker.view
        s = v.step(name)
        if s is None:
            return
        target = args.attempt or s.attempts
        started = target > 0 and s.attempts >= target
        if not started or (v.run, target) in streamed:
            if _nothing_more(v, s, args.attempt, started, (v.run, target) in streamed, single):
                return
            if not started and not waiting_said and single:
                out.note(name, f"waiting for step {name} to start (it is {s.phase})")
                waiting_said = True
            time.sleep(POLL)
            continue
        pod = _pod(conn, ns, v, name, target)
        if pod is None:
            if v.settled:
                streamed.add((v.run, target))
            time.sleep(POLL)
            continue
        pod_name = pod["metadata"]["name"]
        if target > 1 or v.run > 1:
            out.note(name, f"{name}: attempt {target} (pod {pod_name})")
        current = _stream_pod(conn, ns, tracker, v.run, pod_name, args, name, out)
        streamed.add((v.run, target))
        if _pod_phase(current) == "Failed":
            _note_failed(out, name, target, current)
