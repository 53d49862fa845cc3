"""Dashboards, alerts and docs/metrics.md against the metrics the code really declares."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from distillery.dashboards import catalog as cat
from distillery.dashboards import generate as gen
from distillery.dashboards.build import DATASOURCE_UID, all_dashboards, to_grafana
from distillery.dashboards.promql import metric_names, recorded_names, substitute

ROOT = cat.REPO_ROOT
RULES = sorted((ROOT / "deploy/prometheus/rules").glob("*.yml"))


@pytest.fixture(scope="module")
def catalog() -> cat.Catalog:
    return cat.scan()


def _rules() -> list[dict]:
    return [r for path in RULES for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]


def _recorded() -> set[str]:
    return {r["record"] for r in _rules() if "record" in r}


def test_scanner_reads_literals_fstrings_and_locals(tmp_path):
    src = tmp_path / "services" / "demo"
    src.mkdir(parents=True)
    (src / "metrics.py").write_text(
        "from prometheus_client import Counter, Histogram\n"
        "from collections import Counter as C\n"
        "NAME = 'distillery_inference_things_total'\n"
        "A = Counter(NAME, 'Things.', ['filter'])\n"
        "def make(service):\n"
        "    p = f'distillery_{service}_kafka'\n"
        "    return Histogram(f'{p}_batch_seconds', 'Batch time.', buckets=(1, 2))\n"
        "def odd(x):\n"
        "    return Counter(f'distillery_{x}_odd_total', 'Odd.')\n"
        "counts = C()\n"
    )
    found = cat.scan(tmp_path)
    names = {m.name: m for m in found.metrics}
    assert names["distillery_inference_things"].kind == "counter"
    assert names["distillery_inference_things"].labels == ("filter",)
    assert {f"distillery_{s}_kafka_batch_seconds" for s in cat.SERVICES} <= set(names)
    assert found.exports("distillery_trainer_kafka_batch_seconds_bucket")
    assert found.exports("distillery_inference_things_total")
    assert not found.exports("distillery_inference_things")  # a counter is exposed with _total
    assert found.exports("distillery_anything_odd_total")  # unresolved placeholder -> pattern
    assert not found.exports("distillery_inference_missing_total")


def test_promql_name_extraction():
    expr = ('sum by (le) (rate(distillery_a_seconds_bucket{code!="distillery_not_a_name", x=~"$v"}[5m])) '
            "/ on (filter) distillery:rec:ratio + distillery_b_total offset 1d")
    assert metric_names(expr) == {"distillery_a_seconds_bucket", "distillery_b_total"}
    assert recorded_names(expr) == {"distillery:rec:ratio"}
    assert substitute('rate(x{f=~"$filter"}[$__rate_interval])') == 'rate(x{f=~".*"}[2m])'


def test_every_metric_follows_the_naming_scheme(catalog):
    assert catalog.metrics, "no metric constructors found under services/ and distillery/"
    assert not catalog.problems, catalog.problems
    assert not cat.naming_problems(catalog), cat.naming_problems(catalog)


def test_every_service_has_the_shared_rpc_metrics(catalog):
    for service in cat.SERVICES:
        assert catalog.exports(f"distillery_{service}_rpc_seconds_bucket")
        assert catalog.exports(f"distillery_{service}_rpc_requests_total")


def test_every_dashboard_query_reads_only_exported_metrics(catalog):
    recorded = _recorded()
    missing = []
    for spec in all_dashboards():
        assert spec.queries(), f"{spec.uid} has no query"
        for title, expr in spec.queries():
            names = metric_names(expr)
            rec = recorded_names(expr)
            assert names or rec or expr.startswith("up"), f"{spec.uid} / {title}: reads no metric: {expr}"
            missing += [f"{spec.uid} / {title}: {n}" for n in sorted(names) if not catalog.exports(n)]
            missing += [f"{spec.uid} / {title}: recording rule {r}" for r in sorted(rec - recorded)]
    assert not missing, "dashboard queries read metrics no code exports:\n" + "\n".join(missing)


def test_every_rule_reads_only_exported_metrics(catalog):
    recorded = _recorded()
    missing = []
    for rule in _rules():
        name = rule.get("alert") or rule.get("record")
        missing += [f"{name}: {n}" for n in sorted(metric_names(rule["expr"])) if not catalog.exports(n)]
        missing += [f"{name}: recording rule {r}" for r in sorted(recorded_names(rule["expr"]) - recorded)]
    assert not missing, "rules read metrics no code exports:\n" + "\n".join(missing)


def test_the_five_dashboards_exist_with_panels_and_the_provisioned_datasource():
    titles = {d.title for d in all_dashboards()}
    assert titles == {
        "Distillery / Overview",
        "Distillery / Filter quality",
        "Distillery / Score distributions",
        "Distillery / Prefilter",
        "Distillery / Oracle cost",
    }
    provisioned = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert provisioned["datasources"][0]["uid"] == DATASOURCE_UID
    for spec in all_dashboards():
        model = to_grafana(spec)
        assert model["uid"] == spec.uid
        panels = [p for p in model["panels"] if p["type"] != "row"]
        assert len(panels) >= 3
        for panel in panels:
            assert panel["datasource"]["uid"] == DATASOURCE_UID
            assert panel["targets"] and all(t["expr"] for t in panel["targets"])


def test_generated_files_are_up_to_date():
    stale = gen.stale()
    assert not stale, "stale generated files; run `.venv/bin/python -m distillery.dashboards generate`:\n" + "\n".join(
        str(p.relative_to(ROOT)) for p in stale
    )
    for path in (ROOT / "deploy/grafana/dashboards").glob("*.json"):
        json.loads(path.read_text())


def test_metrics_doc_lists_every_metric_and_alert(catalog):
    doc = (ROOT / "docs/metrics.md").read_text()
    for m in catalog.metrics:
        exposed = m.name + ("_total" if m.kind == "counter" else "")
        assert f"`{exposed}`" in doc, f"{exposed} missing from docs/metrics.md"
    for rule in _rules():
        if "alert" in rule:
            assert f"`{rule['alert']}`" in doc


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian package prometheus)")
def test_every_dashboard_query_is_valid_promql(tmp_path):
    """promtool parses each query (variables substituted) as the expression of a recording rule."""
    rules = [
        {"record": f"check:{spec.uid.replace('-', '_')}:{i}", "expr": substitute(expr)}
        for spec in all_dashboards()
        for i, (_, expr) in enumerate(spec.queries())
    ]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}))
    out = subprocess.run(["promtool", "check", "rules", str(path)], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
