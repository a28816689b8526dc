"""The Grafana dashboard against the rules of Grafana's dashboard-linter
(github.com/grafana/dashboard-linter, its default rule set plus
`uneditable`). The linter itself cannot be built here: its Go module is not
served by the module proxy (the proxy answers 403 for it), so its rules are
encoded below, one test each, named as the linter names them, with PromQL
parsed by a real PromQL parser."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import promql_parser
import pytest

from support import prometheus as prom

BOARD = prom.dashboard()
VARIABLES = BOARD["templating"]["list"]
# The linter stands $__rate_interval in by a duration no one writes by hand.
RATE_INTERVAL = "987654321ms"
MAGIC = datetime.timedelta(milliseconds=987654321)
QUERY_PANELS = ("singlestat", "graph", "table", "timeseries", "stat", "gauge")
PANELS = [p for p in BOARD["panels"] if p["type"] in QUERY_PANELS]
TARGETS = [(p, t) for p in PANELS for t in p.get("targets", [])]
# Grafana's unit ids (packages/grafana-data valueFormats), the categories a
# dashboard of counts, rates, durations and sizes can use.
UNITS = {
    "none", "string", "short", "percent", "percentunit", "locale", "sci",
    "bytes", "decbytes", "bits", "kbytes", "mbytes", "gbytes",
    "binBps", "Bps", "bps", "hertz", "ns", "µs", "ms", "s", "m", "h", "d",
    "dtdurationms", "dtdurations", "dthms", "dtdhms", "clockms", "clocks",
    "cps", "ops", "reqps", "rps", "wps", "iops", "cpm", "opm", "rpm", "wpm",
    "bool", "bool_yes_no", "bool_on_off", "dateTimeAsIso", "dateTimeFromNow",
}  # fmt: skip


def _parse(expr: str) -> Any:
    return promql_parser.parse(expr.replace("$__rate_interval", RATE_INTERVAL))


def _children(node: Any) -> list[Any]:
    if isinstance(node, promql_parser.BinaryExpr):
        return [node.lhs, node.rhs]
    if isinstance(node, promql_parser.AggregateExpr):
        return [c for c in (node.expr, node.param) if c is not None]
    if isinstance(node, promql_parser.Call):
        return list(node.args)
    if isinstance(node, promql_parser.MatrixSelector):
        return [node.vector_selector]
    if isinstance(node, (promql_parser.ParenExpr, promql_parser.UnaryExpr)):
        return [node.expr]
    if isinstance(node, promql_parser.SubqueryExpr):
        return [node.expr]
    return []


def _walk(node: Any, parents: tuple[Any, ...] = ()) -> Iterator[tuple[Any, tuple[Any, ...]]]:
    yield node, parents
    for child in _children(node):
        yield from _walk(child, (*parents, node))


def _ids(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[str]:
    return [f"{p['title']}/{t['refId']}" for p, t in pairs]


def _variable(name: str) -> dict[str, Any]:
    (v,) = [v for v in VARIABLES if v["name"] == name]
    return v


def test_uneditable_rule() -> None:
    assert BOARD["editable"] is False


def test_template_datasource_rule() -> None:
    (ds,) = [v for v in VARIABLES if v["type"] == "datasource"]
    assert ds["name"] == "datasource" and ds["label"] == "Data source"
    assert ds["query"] == "prometheus"


@pytest.mark.parametrize("name", ["job", "instance"])
def test_template_job_rule_and_template_instance_rule(name: str) -> None:
    v = _variable(name)
    assert v["datasource"]["uid"] in ("$datasource", "${datasource}")
    assert v["type"] == "query"
    assert v["label"] == name.title()
    assert v["multi"] is True
    assert v["allValue"] == ".+"


def test_template_label_promql_rule() -> None:
    for v in VARIABLES:
        if v["type"] != "query":
            continue
        definition = v["definition"]
        assert definition.startswith("label_values(") and definition.endswith(")"), v["name"]
        inner = definition[len("label_values(") : -1]
        selector, _, label = inner.rpartition(",")
        assert label.strip().isidentifier(), v["name"]
        _parse(selector or inner)  # raises on invalid PromQL


def test_template_on_time_change_reload_rule() -> None:
    for v in VARIABLES:
        if v["type"] == "query":
            assert v["refresh"] == 2, v["name"]


def test_panel_datasource_rule() -> None:
    for p in PANELS:
        assert p["datasource"]["uid"] in ("$datasource", "${datasource}"), p["title"]


def test_panel_title_description_rule() -> None:
    for p in PANELS:
        assert p.get("title") and p.get("description"), p.get("id")


def test_panel_units_rule() -> None:
    for p in PANELS:
        unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit")
        assert unit in UNITS, (p["title"], unit)


def test_panel_no_targets_rule() -> None:
    for p in PANELS:
        assert p.get("targets"), p["title"]


@pytest.mark.parametrize(("panel", "target"), TARGETS, ids=_ids(TARGETS))
def test_target_promql_rule(panel: dict[str, Any], target: dict[str, Any]) -> None:
    _parse(target["expr"])


@pytest.mark.parametrize(("panel", "target"), TARGETS, ids=_ids(TARGETS))
def test_target_rate_interval_rule(panel: dict[str, Any], target: dict[str, Any]) -> None:
    for node, parents in _walk(_parse(target["expr"])):
        if isinstance(node, promql_parser.MatrixSelector) and parents:
            call = parents[-1]
            if isinstance(call, promql_parser.Call) and call.func.name in ("rate", "irate"):
                assert node.range == MAGIC, "rate/irate must use $__rate_interval"


@pytest.mark.parametrize(("panel", "target"), TARGETS, ids=_ids(TARGETS))
def test_target_job_rule_and_target_instance_rule(
    panel: dict[str, Any], target: dict[str, Any]
) -> None:
    for node, _ in _walk(_parse(target["expr"])):
        if isinstance(node, promql_parser.VectorSelector):
            matchers = {(m.name, str(m.op), m.value) for m in node.matchers.matchers}
            for label in ("job", "instance"):
                assert (label, str(promql_parser.MatchOp.Re), f"${label}") in matchers, (
                    node.name,
                    label,
                )


@pytest.mark.parametrize(("panel", "target"), TARGETS, ids=_ids(TARGETS))
def test_target_counter_agg_rule(panel: dict[str, Any], target: dict[str, Any]) -> None:
    for node, parents in _walk(_parse(target["expr"])):
        if isinstance(node, promql_parser.VectorSelector) and (node.name or "").endswith("_total"):
            assert len(parents) >= 2, node.name
            matrix, call = parents[-1], parents[-2]
            assert isinstance(matrix, promql_parser.MatrixSelector), node.name
            assert isinstance(call, promql_parser.Call), node.name
            assert call.func.name in ("rate", "irate", "increase"), node.name
