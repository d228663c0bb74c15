"""The monitoring component as an overlay includes it, on the real control plane with the
Prometheus Operator's own CRDs (from its Go module): the API server accepts every object, and the
scrape targets, ports and NetworkPolicy agree with what the controller and webapp serve."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from controller.settings import ControllerSettings
from scripts import prometheus_tools
from tests.cluster.builders import eventually
from tests.plugins.cluster import ClusterHandle

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]
COMPONENT = REPO / "manifests" / "components" / "monitoring"
NS = "t2v"
OPERATOR_KINDS = ("PodMonitor", "PrometheusRule")


def overlay_with_monitoring(folder: Path) -> Path:
    """An overlay as docs/operations.md tells: the dev overlay plus `components: [monitoring]`."""
    folder.mkdir(parents=True, exist_ok=True)
    rel = lambda p: os.path.relpath(p, folder)  # noqa: E731 - kustomize wants paths relative to the overlay
    (folder / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [rel(REPO / "manifests" / "overlays" / "dev")], "components": [rel(COMPONENT)]}))
    return folder


def container(docs: list[dict], deployment: str) -> dict:
    d = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == deployment)
    return d["spec"]["template"]["spec"]["containers"][0], d["spec"]["template"]["metadata"]["labels"]


def test_base_needs_no_prometheus_operator(test_cluster: ClusterHandle) -> None:
    docs = yaml.safe_load_all(test_cluster.kubectl("kustomize", str(REPO / "manifests" / "overlays" / "dev")).stdout)
    assert not [d["kind"] for d in docs if d and d["kind"] in OPERATOR_KINDS]


def test_component_applies_and_its_targets_match_what_t2v_serves(test_cluster: ClusterHandle, tmp_path: Path) -> None:
    for crd in prometheus_tools.operator_crds("podmonitors", "prometheusrules"):
        test_cluster.kubectl("apply", "--server-side", "-f", str(crd))
    for crd in ("podmonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com"):
        test_cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    overlay = overlay_with_monitoring(tmp_path / "overlay")
    docs = [d for d in yaml.safe_load_all(test_cluster.kubectl("kustomize", str(overlay)).stdout) if d]

    # The controller's metrics port is the one it listens on by default, and the policy opens it.
    ctl, ctl_labels = container(docs, "t2v-controller")
    port = int(ControllerSettings().metrics_address.rpartition(":")[2])
    assert {"name": "metrics", "containerPort": port} in ctl["ports"]
    web, web_labels = container(docs, "t2v-webapp")
    monitors = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PodMonitor"}
    for name, labels, ports in (("t2v-controller", ctl_labels, ctl["ports"]), ("t2v-webapp", web_labels, web["ports"])):
        spec = monitors[name]["spec"]
        assert spec["selector"]["matchLabels"].items() <= labels.items(), name
        for ep in spec["podMetricsEndpoints"]:
            assert ep["port"] in {p["name"] for p in ports} and ep["path"] == "/metrics", (name, ep)
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"].startswith("controller-metrics"))
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= ctl_labels.items()
    assert policy["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": port}]
    dashboard = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "t2v-grafana-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["t2v.json"]) == json.loads((COMPONENT / "dashboard.json").read_text())

    test_cluster.kubectl("apply", "--server-side", "-f", str(REPO / "kueue"))
    test_cluster.kubectl("apply", "-k", str(overlay))  # strict field validation: an unknown field fails
    try:
        mine = [d for d in docs if (d["metadata"].get("labels") or {}).get("app.kubernetes.io/name") == "t2v-monitoring"]
        assert sorted(d["kind"] for d in mine) == ["ConfigMap", "NetworkPolicy", "PodMonitor", "PodMonitor",
                                                   "PrometheusRule"]
        for d in mine:  # in t2v's namespace, labelled, and kept as written (nothing pruned as unknown)
            got = json.loads(test_cluster.kubectl("get", d["kind"].lower(), d["metadata"]["name"], "-n", NS,
                                                  "-o", "json").stdout)
            assert got["metadata"]["labels"]["app.kubernetes.io/part-of"] == "t2v", d["kind"]
            if d["kind"] in OPERATOR_KINDS:
                assert got["spec"] == d["spec"], d["kind"]

        def ports():
            pods = json.loads(test_cluster.kubectl("get", "pods", "-n", NS, "-l", "app.kubernetes.io/name=t2v-controller",
                                                   "-o", "json").stdout)["items"]
            live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            return live and all({"name": "metrics", "containerPort": port, "protocol": "TCP"}
                                in p["spec"]["containers"][0].get("ports", []) for p in live)

        eventually(ports, what="controller pods with the metrics port")
    finally:
        test_cluster.kubectl("delete", "-n", NS, "deployment,daemonset,statefulset", "-l",
                             "app.kubernetes.io/part-of=t2v", "--wait=false", check=False)
        test_cluster.kubectl("delete", "-n", NS, "podmonitor,prometheusrule", "--all", "--wait=false", check=False)
