"""promtool and the Prometheus server in tests: built once from the Prometheus
Go module pinned in hack/cluster/prometheus (cached beside the control plane;
`make test` builds it in its build step), plus the chart's rules and dashboard
as the tests use them."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from support import chart
from support.wait import wait_for

MONITORING = ("monitoring.coreos.com/v1",)
DASHBOARD = chart.CHART / "dashboards" / "sluice.json"


def binary(name: str) -> Path:
    """The cached `prometheus` or `promtool`, built when missing (minutes, once)."""
    cluster = chart.gen_manifests._cluster_module()
    tool = next(t for t in cluster.TEST_TOOLS if t.key == "prometheus")
    path: Path = tool.bindir / name
    if not path.exists():
        cluster._build_tool(tool)
    return path


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary("promtool")), *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def rule_groups(*sets: str, release: str = "sluice", namespace: str = "sluice-system") -> Any:
    """The `groups` of the PrometheusRule `helm template` renders (a Prometheus rule file)."""
    text = chart.render(
        "prometheusRule.enabled=true",
        *sets,
        release=release,
        namespace=namespace,
        api_versions=MONITORING,
        show_only="templates/prometheusrule.yaml",
    )
    return yaml.safe_load(text)["spec"]["groups"]


def alerts(groups: Any) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def dashboard() -> dict[str, Any]:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return board


def dashboard_queries(board: dict[str, Any] | None = None) -> dict[str, str]:
    """Every panel target's expression, keyed 'panel title/refId'."""
    board = board or dashboard()
    return {
        f"{p['title']}/{t['refId']}": t["expr"]
        for p in board["panels"]
        for t in p.get("targets", [])
    }


def dashboard_variables(board: dict[str, Any] | None = None) -> dict[str, str]:
    """Each query variable's `label_values(...)` definition."""
    board = board or dashboard()
    return {v["name"]: v["definition"] for v in board["templating"]["list"] if v["type"] == "query"}


class PrometheusServer:
    """A real Prometheus server (the pinned build) scraping static targets every
    second and evaluating the given rules, its TSDB in a temporary directory."""

    def __init__(
        self,
        workdir: Path,
        targets: list[str],
        job: str,
        target_labels: dict[str, str],
        rule_groups: Any,
    ) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups}))
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(workdir / "rules.yaml")],
            "scrape_configs": [
                {
                    "job_name": job,
                    # As the chart's ServiceMonitor: the operator's own
                    # `namespace` label (a pipeline's) wins over the target's.
                    "honor_labels": True,
                    "static_configs": [{"targets": targets, "labels": target_labels}],
                }
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))

    def start(self) -> PrometheusServer:
        log = open(self.workdir / "prometheus.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [
                str(binary("prometheus")),
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._ready, timeout=60, what="Prometheus to be ready")
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{self.log()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def api(self, path: str, **params: str | list[str]) -> Any:
        """GET /api/v1/PATH; the `data` of a success, an AssertionError otherwise."""
        query = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:
            body = json.loads(e.read())
        assert body["status"] == "success", f"{path} {params}: {body}"
        assert not body.get("warnings"), f"{path} {params}: {body['warnings']}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector: [{"metric": {...}, "value": [t, "v"]}]."""
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def values(self, expr: str, by: str) -> dict[str, float]:
        return {s["metric"].get(by, ""): float(s["value"][1]) for s in self.query(expr)}

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log(self) -> str:
        try:
            return (self.workdir / "prometheus.log").read_text(errors="replace")[-5000:]
        except OSError:
            return ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def promtool_stdin(text: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary("promtool")), *args], input=text, capture_output=True, text=True, timeout=120
    )
