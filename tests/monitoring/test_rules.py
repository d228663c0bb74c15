"""The monitoring component checked with Prometheus's own promtool, against what t2v really exports.

- `promtool check rules` on the PrometheusRule's groups, and on the dashboard's queries written out
  as recording rules (promtool parses each with Prometheus's own PromQL parser).
- `promtool test rules` (alerts_test.yaml): each alert fires where it should and stays quiet where
  it should not.
- Every metric a rule, an alert test or a dashboard query names is served by a real `t2v serve`
  (webapp + local runner) or by the controller's own metrics endpoint, with the labels the tests use.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from controller.main import serve_metrics
from controller.metrics import ControllerMetrics

REPO = Path(__file__).resolve().parents[2]
COMPONENT = REPO / "manifests" / "components" / "monitoring"
ALERT_TESTS = Path(__file__).with_name("alerts_test.yaml")
# What Grafana puts in for its variables before a query reaches Prometheus.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$tenant": ".*"}
# Labels Prometheus adds to every scraped series (target labels), not the exporter.
TARGET_LABELS = {"instance", "job", "pod", "namespace", "container", "endpoint"}
METRIC = re.compile(r"\bt2v_[a-z0-9_]+")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def alert_groups() -> list[dict]:
    doc = yaml.safe_load((COMPONENT / "prometheusrule.yaml").read_text())
    assert doc["kind"] == "PrometheusRule"
    return doc["spec"]["groups"]


def alerts() -> list[dict]:
    return [r for g in alert_groups() for r in g["rules"] if "alert" in r]


def dashboard() -> dict:
    return json.loads((COMPONENT / "dashboard.json").read_text())


def dashboard_exprs() -> list[str]:
    """Every panel query, with Grafana's variables filled in as Grafana would."""
    exprs = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for var, value in GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            assert "$" not in expr, f"panel {panel['title']!r}: unknown Grafana variable in {expr}"
            exprs.append(expr)
    return exprs


def names_in(expr: str) -> set[str]:
    """Metric names in a PromQL expression (string literals, e.g. label values, left out)."""
    return set(METRIC.findall(STRING.sub('""', expr)))


def series_in_alert_tests() -> list[str]:
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    return [s["series"] for t in tests for s in t["input_series"]]


def promtool_ok(promtool: Path, *args: str) -> str:
    p = subprocess.run([str(promtool), *args], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"promtool {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    return p.stdout


def write_rules(folder: Path, groups: list[dict]) -> Path:
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def test_alert_rules_pass_promtool_check(promtool: Path, tmp_path: Path) -> None:
    out = promtool_ok(promtool, "check", "rules", str(write_rules(tmp_path, alert_groups())))
    assert f"SUCCESS: {len(alerts())} rules found" in out, out
    names = [a["alert"] for a in alerts()]
    assert {"T2VQueueNotDraining", "T2VVideoFailureRate", "T2VWatcherLagging", "T2VModelCacheNotReady"} <= set(names)
    for a in alerts():  # what an on-call person needs on the page
        assert a["labels"]["severity"] in ("warning", "critical") and a.get("for"), a["alert"]
        assert "docs/operations.md" in a["annotations"]["description"], a["alert"]


def test_each_alert_fires_and_stays_quiet_in_promtool_unit_tests(promtool: Path, tmp_path: Path) -> None:
    cases = [c for t in yaml.safe_load(ALERT_TESTS.read_text())["tests"] for c in t["alert_rule_test"]]
    for a in alerts():
        mine = [c for c in cases if c["alertname"] == a["alert"]]
        assert any(c["exp_alerts"] for c in mine), f"no test where {a['alert']} fires"
        assert any(not c["exp_alerts"] for c in mine), f"no test where {a['alert']} stays quiet"
    write_rules(tmp_path, alert_groups())
    shutil.copy(ALERT_TESTS, tmp_path / ALERT_TESTS.name)
    out = promtool_ok(promtool, "test", "rules", str(tmp_path / ALERT_TESTS.name))
    assert "SUCCESS" in out, out


def test_dashboard_queries_parse_as_promql(promtool: Path, tmp_path: Path) -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    rules = [{"record": f"t2v_dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]
    out = promtool_ok(promtool, "check", "rules", str(write_rules(tmp_path, [{"name": "dashboard", "rules": rules}])))
    assert f"SUCCESS: {len(rules)} rules found" in out, out
    d = dashboard()
    assert d["uid"] and all(p["datasource"]["uid"] == "${datasource}" for p in d["panels"] if p["type"] != "row")
    assert len({p["id"] for p in d["panels"]}) == len(d["panels"])


def exported(text: str) -> dict[str, set[str]]:
    """Sample name -> label names, for every family of a scrape (families without samples: their
    sample names, with no labels known)."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for suffix in suffixes.get(family.type, [""]):
            out.setdefault(family.name + suffix, set())
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


@pytest.mark.slow
def test_every_metric_the_rules_and_dashboard_name_is_exported(server, tmp_path: Path) -> None:
    # A real `t2v serve` (webapp + local runner) and the controller's endpoint, over HTTP.
    served = exported(httpx.get(server.url + "/metrics", timeout=30).text)
    endpoint = serve_metrics("127.0.0.1:0", ControllerMetrics(f"sqlite:///{server.data_dir / 't2v.db'}").registry)
    try:
        controller = exported(httpx.get(f"http://127.0.0.1:{endpoint.server_port}/metrics", timeout=30).text)
    finally:
        endpoint.shutdown()
        endpoint.server_close()
    everything = {**served, **controller}

    used: dict[str, set[str]] = {}
    for a in alerts():
        for name in names_in(a["expr"]):
            used.setdefault(name, set()).add(f"alert {a['alert']}")
    for expr in dashboard_exprs() + [dashboard()["templating"]["list"][1]["definition"]]:
        for name in names_in(expr):
            used.setdefault(name, set()).add("dashboard")
    for series in series_in_alert_tests():
        used.setdefault(series.split("{")[0], set()).add("alerts_test.yaml")
    # Not vacuous: the operator's questions are all asked somewhere.
    assert {"t2v_videos_waiting", "t2v_submit_to_admission_seconds_bucket", "t2v_preemptions_total",
            "t2v_checkpoint_resumes_total", "t2v_video_failures_total", "t2v_watcher_lag_seconds_bucket",
            "t2v_run_gpu_seconds_total", "t2v_run_work_units_total", "t2v_job_pods"} <= set(used)
    missing = {name: where for name, where in used.items() if name not in everything}
    assert not missing, f"named but not exported: {missing}"

    # The operator names are the same in both modes: what the runner shares with the controller
    # appears under the same names on the embedded server's /metrics.
    shared = {"t2v_videos_waiting", "t2v_videos_running", "t2v_submit_to_job_seconds_bucket",
              "t2v_submit_to_running_seconds_bucket", "t2v_video_starts_total", "t2v_videos_finished_total",
              "t2v_video_failures_total", "t2v_checkpoint_resumes_total", "t2v_run_gpu_seconds_total"}
    assert shared <= set(served) and shared <= set(controller)

    # The alert tests' series carry only labels the exporter gives those series (where it has samples).
    for series in series_in_alert_tests():
        name, _, rest = series.partition("{")
        labels = {kv.split("=")[0] for kv in STRING.sub('""', rest.rstrip("}")).split(",") if kv}
        known = everything[name]
        if known:
            assert labels - TARGET_LABELS - {"le"} <= known, (series, known)
