"""The chart's alerts through the real promtool (Prometheus 3.16, built from its
Go module, cached): the rendered rules pass `promtool check rules`, and the
unit tests in tests/promtool/ (`promtool test rules`) show each alert firing
when it should and staying quiet when it shouldn't: a crash loop that answers
between crashes, an operator's death (no "resolved" for a Degraded pipeline),
two replicas (only the leader's series count), a burst in a brand-new series,
one refused Job create."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from support import chart
from support import prometheus as prom
from support.cluster import ROOT

TESTS = ROOT / "tests" / "promtool" / "alerts.test.yaml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"


def _write_rules(path: Path, groups: Any, annotations: bool = True) -> Path:
    if not annotations:
        groups = [
            {**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]}
            for g in groups
        ]
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


@pytest.mark.parametrize(
    "sets",
    [
        (),
        ("prometheusRule.alertLabels.team=data", "prometheusRule.degradedFor=1h"),
        ("prometheusRule.failed.for=5m", "prometheusRule.jobApiErrorsWindow=2m"),
    ],
)
def test_rendered_rules_pass_promtool_check_rules(tmp_path: Path, sets: tuple[str, ...]) -> None:
    rules = _write_rules(tmp_path / "rules.yaml", prom.rule_groups(*sets))
    r = prom.promtool("check", "rules", "--lint=all", "--lint-fatal", str(rules))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_every_alert_fires_and_stays_quiet_in_promtool_unit_tests(tmp_path: Path) -> None:
    _write_rules(tmp_path / "rules.yaml", prom.rule_groups(), annotations=False)
    shutil.copy(TESTS, tmp_path / TESTS.name)
    r = prom.promtool("test", "rules", TESTS.name, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_unit_tests_cover_every_alert_both_ways() -> None:
    cases = yaml.safe_load(TESTS.read_text())["tests"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in cases:
        for t in case.get("alert_rule_test", []):
            (fires if t["exp_alerts"] else quiet).add(t["alertname"])
    every = set(prom.alerts(prom.rule_groups()))
    assert fires == every, f"never shown firing: {every - fires}"
    assert quiet == every, f"never shown quiet: {every - quiet}"


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the markdown's headings."""
    out = set()
    for line in markdown.splitlines():
        m = re.match(r"^#{1,6}\s+(.*)$", line)
        if m:
            out.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return out


def test_every_alert_links_its_runbook_section_and_every_section_is_an_alert() -> None:
    alerts = prom.alerts(prom.rule_groups())
    sections = {
        line[3:].strip() for line in RUNBOOKS.read_text().splitlines() if line.startswith("## ")
    }
    assert sections == set(alerts)
    anchors = _anchors(RUNBOOKS.read_text())
    for name, alert in alerts.items():
        url = alert["annotations"]["runbook_url"]
        base, _, anchor = url.partition("#")
        assert base.endswith("/docs/runbooks.md"), url
        assert anchor == name.lower() and anchor in anchors, url


def test_alerts_carry_job_namespace_and_install_labels() -> None:
    groups = prom.rule_groups(release="etl", namespace="data-ops")
    for name, alert in prom.alerts(groups).items():
        assert alert["labels"]["sluice_install"] == "data-ops", name
        assert alert["labels"]["severity"] in ("warning", "critical"), name
        expr = alert["expr"]
        assert 'job="etl-sluice-metrics"' in expr, name
        # Aggregations keep the labels that tell installs and namespaces apart.
        for by in re.findall(r"\bby \(([^)]*)\)", expr):
            assert "job" in by, (name, by)


def test_no_hard_coded_windows_every_duration_comes_from_values() -> None:
    sets = (
        "prometheusRule.degradedFor=31m",
        "prometheusRule.degradedHoldWhileDown=7h",
        "prometheusRule.failed.window=32m",
        "prometheusRule.failed.for=1m",
        "prometheusRule.stepsStuckFor=12m",
        "prometheusRule.retries.window=33m",
        "prometheusRule.retries.for=2m",
        "prometheusRule.operatorDownFor=3m",
        "prometheusRule.restarts.window=34m",
        "prometheusRule.restarts.for=4m",
        "prometheusRule.leaderFor=6m",
        "prometheusRule.reconcile.window=35m",
        "prometheusRule.reconcile.errorsFor=8m",
        "prometheusRule.reconcile.stuckFor=9m",
        "prometheusRule.jobApiErrorsWindow=36m",
        "prometheusRule.jobApiErrorsFor=11m",
    )
    alerts = prom.alerts(prom.rule_groups(*sets))
    windows = {s.split("=")[1] for s in sets if "window" in s.lower() or "Hold" in s}
    for name, alert in alerts.items():
        used = set(re.findall(r"\[(\w+?):?\]|offset (\w+)", alert["expr"]))
        flat = {w for pair in used for w in pair if w}
        assert flat <= windows, (name, flat - windows)
    fors = {a["for"] for a in alerts.values()}
    assert fors == {s.split("=")[1] for s in sets if "For" in s or ".for" in s}


@pytest.mark.parametrize(
    "bad",
    [
        "prometheusRule.degradedFor=abc",
        "prometheusRule.jobApiErrorsFor=10 minutes",
        "prometheusRule.retries.window=0s",
        "prometheusRule.reconcile.window=5m1h",
        "serviceMonitor.interval=30",
    ],
)
def test_alert_durations_must_be_prometheus_durations(bad: str) -> None:
    with pytest.raises(SystemExit, match=re.escape(bad.split("=")[0].split(".")[-1])):
        chart.render(bad, "prometheusRule.enabled=true", api_versions=prom.MONITORING)
