"""``kubectl sluice``: see a pipeline as a tree, read a step's logs, retry, rerun, suspend,
resume, draw the DAG, lint manifests.

Installed as the console script ``kubectl-sluice``, so kubectl finds it as a plugin.
A client of the Kubernetes API only: it never imports ``sluice.shell`` (an import-linter
contract says so).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO

import yaml

from sluice.api import RERUN_ANNOTATION, RETRY_ANNOTATION
from sluice.kubectl_sluice import actions, render
from sluice.kubectl_sluice.kube import Conn, UserError, connect

__all__ = ["main"]

PROG = "kubectl sluice"


# ----------------------------------------------------------------------------- terminal


def _now() -> datetime:
    return datetime.now(UTC)


def style_for(stream: TextIO) -> render.Style:
    """Colour on a terminal unless NO_COLOR is set (no-color.org) or TERM is dumb."""
    tty = stream.isatty()
    color = tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
    unicode = encoding in ("utf8", "utf16", "utf32") or encoding.startswith("utf")
    width = shutil.get_terminal_size().columns if tty else None
    return render.Style(color=color, unicode=unicode, width=width)


def _out(lines: Sequence[str]) -> None:
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()


class Screen:
    """Redraws a block of lines in place: cursor up, overwrite, clear what is left.

    One write per frame (no flicker), lines cut to the terminal's width (a wrapped line
    would break the count), and at most its height.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.height = 0
        self.last: list[str] | None = None
        stream.write("\x1b[?25l")  # hide the cursor while drawing

    def draw(self, lines: list[str]) -> None:
        size = shutil.get_terminal_size()
        room = max(3, size.lines - 1)
        if len(lines) > room:
            more = len(lines) - room + 1
            lines = [*lines[: room - 1], f"… {more} more lines (a taller terminal shows them)"]
        lines = [render.fit(line, size.columns - 1) for line in lines]
        if lines == self.last:
            return
        parts = []
        if self.height:
            parts.append(f"\r\x1b[{self.height}A")
        parts.extend(line + "\x1b[K\n" for line in lines)
        parts.append("\x1b[J")
        self.stream.write("".join(parts))
        self.stream.flush()
        self.height = len(lines)
        self.last = lines

    def close(self) -> None:
        self.stream.write("\x1b[?25h")
        self.stream.flush()


# ----------------------------------------------------------------------------- arguments


class _Parser(argparse.ArgumentParser):
    """Bad usage: one sentence on stderr and exit code 2, no usage dump."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{PROG}: {message} (see: {self.prog} --help)\n")
        sys.exit(2)


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cluster")
    g.add_argument("-n", "--namespace", help="the namespace (default: the context's)")
    g.add_argument("--context", help="the kubeconfig context to use")
    g.add_argument("--kubeconfig", help="path to the kubeconfig file (default: $KUBECONFIG)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="See Sluice pipelines as trees, read their logs, retry, rerun, lint.",
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    g = sub.add_parser("get", help="a pipeline as a tree of steps")
    g.add_argument("pipeline")
    g.add_argument("-o", "--output", choices=["tree", "json", "yaml"], default="tree")
    g.add_argument("-w", "--watch", action="store_true", help="redraw as it changes")
    g.add_argument(
        "--keep-watching",
        action="store_true",
        help="with -w: go on watching after the run settles (until Ctrl-C)",
    )
    _common(g)

    ls = sub.add_parser("list", aliases=["ls"], help="pipelines, one line each")
    ls.add_argument("-A", "--all-namespaces", action="store_true")
    ls.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    _common(ls)

    lg = sub.add_parser("logs", help="the logs of a step's pod, or of every step")
    lg.add_argument("pipeline")
    lg.add_argument("step", nargs="?")
    lg.add_argument("-f", "--follow", action="store_true", help="stream as the steps run")
    lg.add_argument("--failed", action="store_true", help="only the failed steps")
    lg.add_argument("--attempt", type=_positive, help="this attempt instead of the latest")
    lg.add_argument("-c", "--container", default="main", help="the container (default: main)")
    _common(lg)

    for name, text in (
        ("retry", f"retry the failed steps (annotates {RETRY_ANNOTATION})"),
        ("rerun", f"start a fresh run: every step again (annotates {RERUN_ANNOTATION})"),
        ("suspend", "start no new steps (spec.suspend: true); running ones finish"),
        ("resume", "start steps again (spec.suspend: false)"),
    ):
        c = sub.add_parser(name, help=text)
        c.add_argument("pipeline")
        c.add_argument("-w", "--watch", action="store_true", help="then watch it, as get -w")
        _common(c)

    gr = sub.add_parser("graph", help="the DAG as Graphviz dot or Mermaid")
    gr.add_argument("pipeline", nargs="?")
    gr.add_argument("-f", "--filename", help="a manifest file instead of a pipeline in the cluster")
    gr.add_argument("--format", choices=["mermaid", "dot"], default="mermaid")
    _common(gr)

    lt = sub.add_parser("lint", help="check manifests offline, as kubectl apply would")
    lt.add_argument("files", nargs="+", metavar="FILE", help="files or directories")
    lt.add_argument("-q", "--quiet", action="store_true", help="no summary line")
    return p


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _conn(args: argparse.Namespace) -> tuple[Conn, str]:
    conn = connect(args.kubeconfig, args.context)
    return conn, args.namespace or conn.namespace


# ----------------------------------------------------------------------------- get


def cmd_get(args: argparse.Namespace) -> int:
    conn, ns = _conn(args)
    obj = conn.get_pipeline(ns, args.pipeline)
    if args.output in ("json", "yaml") and not args.watch:
        status = obj.get("status") or {}
        if args.output == "json":
            print(json.dumps(status, indent=2))
        else:
            print(yaml.safe_dump(status, sort_keys=False), end="")
        return 0
    if not args.watch:
        _out(render.render_get(render.view(obj), _now(), style_for(sys.stdout)))
        return 0
    return watch(conn, ns, args.pipeline, obj, keep=args.keep_watching)


def _watcher(conn: Conn, ns: str, name: str, rv: str | None, q: queue.Queue[Any]) -> None:
    """Feed the pipeline's watch events into ``q`` (a thread), re-watching as needed."""
    backoff = 0.5
    while True:
        try:
            for kind, obj in conn.watch_pipeline(ns, name, rv):
                if kind == "ERROR":
                    rv = None  # expired: start from the current state
                    break
                rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                q.put((kind, obj))
                backoff = 0.5
        except Exception:
            time.sleep(backoff)
            backoff = min(backoff * 2, 5)
            rv = None
            try:
                q.put(("MODIFIED", conn.get_pipeline(ns, name)))
            except UserError as e:
                if "not found" in str(e):
                    q.put(("DELETED", {}))
                    return


def watch(conn: Conn, ns: str, name: str, obj: dict[str, Any], keep: bool = False) -> int:
    """``get -w``: redraw in place on a terminal, else one line per change; return when
    the run settles (unless ``keep``)."""
    q: queue.Queue[Any] = queue.Queue()
    rv = (obj.get("metadata") or {}).get("resourceVersion")
    threading.Thread(target=_watcher, args=(conn, ns, name, rv, q), daemon=True).start()
    tty = sys.stdout.isatty()
    current = render.view(obj)
    screen = Screen(sys.stdout) if tty else None
    if not tty:
        _out(render.render_get(current, _now(), style_for(sys.stdout)))
    try:
        while True:
            now = _now()
            if screen is not None:
                screen.draw(render.render_get(current, now, style_for(sys.stdout)))
            if current.settled and not keep:
                return 0
            try:
                kind, new_obj = q.get(timeout=1.0)
            except queue.Empty:
                continue
            if kind == "DELETED":
                raise UserError(f'pipeline "{name}" was deleted')
            new = render.view(new_obj)
            if not tty:
                _out(render.changes(current, new, _now()))
            current = new
    finally:
        if screen is not None:
            screen.close()


# ----------------------------------------------------------------------------- list


def cmd_list(args: argparse.Namespace) -> int:
    conn, ns = _conn(args)
    items = conn.list_pipelines(None if args.all_namespaces else ns)
    if args.output == "json":
        print(json.dumps(items, indent=2))
        return 0
    if args.output == "yaml":
        print(yaml.safe_dump(items, sort_keys=False), end="")
        return 0
    if not items:
        where = "any namespace" if args.all_namespaces else f'namespace "{ns}"'
        print(f"No pipelines in {where}.", file=sys.stderr)
        return 0
    views = [render.view(o) for o in items]
    _out(render.render_list(views, _now(), style_for(sys.stdout), args.all_namespaces))
    return 0


# ----------------------------------------------------------------------------- actions


def cmd_action(args: argparse.Namespace) -> int:
    """retry, rerun, suspend, resume: what the annotations and spec.suspend do."""
    conn, ns = _conn(args)
    obj = conn.get_pipeline(ns, args.pipeline)
    v = render.view(obj)
    if args.command == "retry":
        rc = actions.retry(conn, ns, obj, v, PROG, _now)
    elif args.command == "rerun":
        rc = actions.rerun(conn, ns, obj, v, PROG, _now)
    else:
        rc = actions.suspend(conn, ns, v, args.command == "suspend", PROG)
    if rc == 0 and args.watch:
        return watch(conn, ns, v.name, conn.get_pipeline(ns, v.name))
    return rc


# ----------------------------------------------------------------------------- graph


def cmd_graph(args: argparse.Namespace) -> int:
    if (args.pipeline is None) == (args.filename is None):
        raise UserError("give either a PIPELINE in the cluster or -f FILE, not both or neither")
    if args.filename:
        v = _pipeline_from_file(Path(args.filename), args.pipeline)
    else:
        conn, ns = _conn(args)
        v = render.view(conn.get_pipeline(ns, args.pipeline))
    text = render.to_dot(v) if args.format == "dot" else render.to_mermaid(v)
    sys.stdout.write(text)
    return 0


def _pipeline_from_file(path: Path, name: str | None) -> render.PipelineView:
    try:
        docs = list(yaml.safe_load_all(path.read_text()))
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    pipelines = [d for d in docs if isinstance(d, dict) and d.get("kind") == "Pipeline"]
    if not pipelines:
        raise UserError(f"{path} holds no Pipeline")
    # Offline: the structure only (a status in the file is ignored).
    views = [render.without_status(render.view({**p, "status": {}})) for p in pipelines]
    if name is None and len(views) > 1:
        raise UserError(f"{path} holds {len(views)} pipelines: name one after -f")
    return views[0] if name is None else _named(views, name, path)


def _named(views: list[render.PipelineView], name: str, path: Path) -> render.PipelineView:
    for v in views:
        if v.name == name:
            return v
    raise UserError(f'{path} has no pipeline "{name}"')


# ----------------------------------------------------------------------------- lint


def cmd_lint(args: argparse.Namespace) -> int:
    from sluice.kubectl_sluice.lint import lint

    result = lint([Path(f) for f in args.files])
    for p in result.problems:
        print(p)
    if not args.quiet:
        verdict = "all valid" if result.ok else f"{result.invalid} invalid"
        print(
            f"{result.files} file{'s' if result.files != 1 else ''}, "
            f"{result.objects} object{'s' if result.objects != 1 else ''}: {verdict}",
            file=sys.stderr,
        )
    return 0 if result.ok else 1


# ----------------------------------------------------------------------------- main


def cmd_logs(args: argparse.Namespace) -> int:
    from sluice.kubectl_sluice import logs

    conn, ns = _conn(args)
    return logs.run(conn, ns, args)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "get": cmd_get,
    "list": cmd_list,
    "ls": cmd_list,
    "logs": cmd_logs,
    "retry": cmd_action,
    "rerun": cmd_action,
    "suspend": cmd_action,
    "resume": cmd_action,
    "graph": cmd_graph,
    "lint": cmd_lint,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # A closed pipe (`kubectl sluice logs x | head`) ends quietly, like other tools.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        return COMMANDS[args.command](args)
    except UserError as e:
        sys.stdout.flush()
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
