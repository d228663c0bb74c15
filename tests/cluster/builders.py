"""Small builders for the Kueue objects and GPU Jobs the cluster tests create."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

GPU = "nvidia.com/gpu"
H100_PRODUCT = "NVIDIA-H100-80GB-HBM3"
KUEUE = ("kueue.x-k8s.io", "v1beta2")


def resource_flavor(name: str) -> dict[str, Any]:
    return {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": name},
            "spec": {"nodeLabels": {"nvidia.com/gpu.product": H100_PRODUCT}}}


def cluster_queue(name: str, *, flavor: str, namespace: str, gpus: int = 8) -> dict[str, Any]:
    """A StrictFIFO ClusterQueue for one namespace, so pending positions are deterministic."""
    return {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue", "metadata": {"name": name},
            "spec": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                     "queueingStrategy": "StrictFIFO",
                     "resourceGroups": [{"coveredResources": ["cpu", "memory", GPU], "flavors": [
                         {"name": flavor, "resources": [{"name": "cpu", "nominalQuota": "128"},
                                                        {"name": "memory", "nominalQuota": "1Ti"},
                                                        {"name": GPU, "nominalQuota": str(gpus)}]}]}]}}


def local_queue(name: str, *, namespace: str, cluster_queue: str) -> dict[str, Any]:
    return {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"clusterQueue": cluster_queue}}


def gpu_job(name: str, *, queue: str, gpus: int = 2, run_seconds: float = 2, completions: int = 1) -> dict[str, Any]:
    """A suspended indexed Job like t2v's dispatcher makes; kwok completes its pods after run_seconds."""
    delay = f"{int(run_seconds * 1000)}ms"
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "labels": {"kueue.x-k8s.io/queue-name": queue}},
        "spec": {
            "suspend": True, "completionMode": "Indexed", "completions": completions, "parallelism": completions,
            "backoffLimit": 0,
            "template": {
                # kwok's pod-complete stage adds a random jitter up to the jitter delay; keeping it equal
                # to the delay (it must not be smaller) makes the run time exact.
                "metadata": {"annotations": {"pod-complete.stage.kwok.x-k8s.io/delay": delay,
                                             "pod-complete.stage.kwok.x-k8s.io/jitter-delay": delay}},
                "spec": {"restartPolicy": "Never", "containers": [{
                    "name": "main", "image": "t2v-jobimage:fake",
                    "resources": {"requests": {"cpu": "1", "memory": "1Gi", GPU: str(gpus)},
                                  "limits": {GPU: str(gpus)}}}]}},
        },
    }


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for c in obj.get("status", {}).get("conditions", []) or []:
        if c.get("type") == ctype:
            return c
    return None


def is_true(obj: dict[str, Any], ctype: str) -> bool:
    c = condition(obj, ctype)
    return bool(c and c.get("status") == "True")


def eventually(check: Callable[[], Any], *, timeout: float = 90, what: str = "condition") -> Any:
    """Poll check() until it returns something truthy; fail with `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
