"""The shipped manifests on the real control plane, installed the way docs/operations.md says.

`kubectl apply --server-side -f kueue/` then `kubectl apply -k manifests/overlays/dev`: the API
server, its admission (pod security included) and Kueue's webhooks must accept every object; the
model-cache DaemonSet's pod must land on the GPU node even when that node is tainted for GPU work
only, and the Deployments' pods must be scheduled. kwok runs no containers, so images that do not
exist here are fine: the pods are scheduled and kwok reports them Running.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from scripts.testcluster_lib.cluster import H100_LABELS
from tests.cluster.builders import eventually, is_true
from tests.plugins.cluster import ClusterHandle

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]
NS = "t2v"  # the manifests' own namespace
GPU_TAINT = "nvidia.com/gpu=present:NoSchedule"  # docs/operations.md, step 1


def get(cluster: ClusterHandle, *args: str) -> dict:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def built(cluster: ClusterHandle, overlay: str) -> list[dict]:
    """What `kubectl apply -k` sends: the overlay as kubectl's kustomize builds it."""
    return list(yaml.safe_load_all(cluster.kubectl("kustomize", str(REPO / "manifests" / "overlays" / overlay)).stdout))


@pytest.fixture
def gpu_node_tainted(test_cluster: ClusterHandle) -> Iterator[str]:
    """The kwok GPU node, tainted as operations.md tells for a real one; untainted afterwards."""
    node = "gpu-node-0"
    test_cluster.kubectl("taint", "node", node, GPU_TAINT, "--overwrite")
    try:
        yield node
    finally:
        test_cluster.kubectl("taint", "node", node, "nvidia.com/gpu:NoSchedule-", check=False)


def test_install_as_documented_is_accepted_and_the_model_cache_runs_on_the_gpu_node(
        test_cluster: ClusterHandle, gpu_node_tainted: str) -> None:
    test_cluster.kubectl("apply", "--server-side", "-f", str(REPO / "kueue"))
    test_cluster.kubectl("apply", "-k", str(REPO / "manifests" / "overlays" / "dev"))
    try:
        docs = built(test_cluster, "dev")
        for d in docs:  # every object is there as built, labelled (STYLE 12: labels on everything)
            ns = ["-n", d["metadata"].get("namespace", NS)] if d["kind"] not in ("Namespace", "ClusterRole",
                                                                               "ClusterRoleBinding") else []
            got = get(test_cluster, d["kind"].lower(), d["metadata"]["name"], *ns)
            assert (got["metadata"].get("labels") or {}).get("app.kubernetes.io/part-of") == "t2v", d["kind"]

        for cq in ("t2v-short", "t2v-long"):
            eventually(lambda cq=cq: is_true(get(test_cluster, "clusterqueue", cq), "Active"),
                       what=f"ClusterQueue {cq} active")
        for lq in ("short", "long"):
            eventually(lambda lq=lq: is_true(get(test_cluster, "localqueue", lq, "-n", NS), "Active"),
                       what=f"LocalQueue {lq} active")

        # The DaemonSet selects and tolerates what an H100 node carries (the kwok node has those labels).
        ds = next(d for d in docs if d["kind"] == "DaemonSet")
        spec = ds["spec"]["template"]["spec"]
        assert spec["nodeSelector"].items() <= H100_LABELS.items(), spec["nodeSelector"]
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]

        def model_cache_pod():
            pods = get(test_cluster, "pods", "-n", NS, "-l", "app.kubernetes.io/name=t2v-model-cache")["items"]
            return pods[0] if pods and pods[0]["status"].get("phase") == "Running" else None

        pod = eventually(model_cache_pod, what="model-cache pod Running")
        assert pod["spec"]["nodeName"] == gpu_node_tainted
        status = get(test_cluster, "daemonset", "t2v-model-cache", "-n", NS)["status"]
        assert status["desiredNumberScheduled"] == 1 and status["numberAvailable"] == 1, status

        # Webapp and controller have no business on the tainted GPU node: they wait for another node.
        def pending(app: str) -> list[dict]:
            return get(test_cluster, "pods", "-n", NS, "-l", f"app.kubernetes.io/name={app}")["items"]

        for app in ("t2v-webapp", "t2v-controller"):
            pods = eventually(lambda app=app: len(pending(app)) == 2 and pending(app), what=f"{app} pods made")
            assert all(not p["spec"].get("nodeName") for p in pods), app
        # The database and object store StatefulSets are accepted (this plane has no volume provisioner).
        for sts in ("t2v-postgres", "t2v-minio"):
            assert get(test_cluster, "statefulset", sts, "-n", NS)["spec"]["replicas"] == 1

        # Re-applying kueue/ (operations.md, "Resize the quota") leaves the namespace's pod security alone.
        test_cluster.kubectl("apply", "--server-side", "-f", str(REPO / "kueue"))
        labels = get(test_cluster, "namespace", NS)["metadata"]["labels"]
        ns_doc = next(d for d in docs if d["kind"] == "Namespace")
        assert ns_doc["metadata"]["labels"].items() <= labels.items(), labels
        assert labels["pod-security.kubernetes.io/enforce"] == "privileged"

    finally:
        test_cluster.kubectl("delete", "-n", NS, "deployment,daemonset,statefulset", "-l",
                             "app.kubernetes.io/part-of=t2v", "--wait=false", check=False)


def test_webapp_and_controller_pods_are_scheduled_on_an_untainted_node(test_cluster: ClusterHandle) -> None:
    test_cluster.kubectl("apply", "--server-side", "-f", str(REPO / "kueue"))
    test_cluster.kubectl("apply", "-k", str(REPO / "manifests" / "overlays" / "dev"))
    try:
        for app in ("t2v-webapp", "t2v-controller"):
            def scheduled(app=app):
                pods = get(test_cluster, "pods", "-n", NS, "-l", f"app.kubernetes.io/name={app}")["items"]
                live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
                return len(live) == 2 and all(p["spec"].get("nodeName") and p["status"].get("phase") == "Running"
                                              for p in live) and live

            pods = eventually(scheduled, what=f"{app}: 2 pods Running")
            assert {p["spec"]["nodeName"] for p in pods} == {"gpu-node-0"}
            c = pods[0]["spec"]["containers"][0]
            assert c["securityContext"]["readOnlyRootFilesystem"] is True and c["resources"]["limits"]["memory"]
    finally:
        test_cluster.kubectl("delete", "-n", NS, "deployment,daemonset,statefulset", "-l",
                             "app.kubernetes.io/part-of=t2v", "--wait=false", check=False)


def test_h100_overlay_applies_and_applies_again(test_cluster: ClusterHandle) -> None:
    """The real-node overlay, installed and then applied again (as after `kustomize edit set image`)."""
    test_cluster.kubectl("apply", "--server-side", "-f", str(REPO / "kueue"))
    overlay = str(REPO / "manifests" / "overlays" / "h100")
    try:
        for _ in range(2):
            p = test_cluster.kubectl("apply", "-k", overlay)
            assert "hides previous definition" not in p.stderr, p.stderr
        env = get(test_cluster, "deployment", "t2v-controller", "-n", NS)["spec"]["template"]["spec"]["containers"][0]["env"]
        names = [e["name"] for e in env]
        assert len(names) == len(set(names)), names
        assert {e["name"]: e.get("value") for e in env}["T2V_JOB_IMAGE"] == "registry.example.com/t2v/jobimage:0.1.0"
        ds = get(test_cluster, "daemonset", "t2v-model-cache", "-n", NS)["spec"]["template"]["spec"]
        assert ds["volumes"][0]["hostPath"]["path"] == "/mnt/nvme/t2v/models"
    finally:
        test_cluster.kubectl("delete", "-n", NS, "deployment,daemonset,statefulset", "-l",
                             "app.kubernetes.io/part-of=t2v", "--wait=false", check=False)
