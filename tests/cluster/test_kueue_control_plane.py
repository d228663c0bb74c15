"""Proof that the loopback control plane is real: Kueue admits GPU Jobs, kwok runs them, webhooks bite."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from kubernetes import client

from tests.cluster.builders import (
    GPU,
    cluster_queue,
    condition,
    eventually,
    gpu_job,
    is_true,
    local_queue,
    resource_flavor,
)
from tests.plugins.cluster import ClusterHandle

pytestmark = pytest.mark.cluster


@dataclass(frozen=True)
class Queues:
    namespace: str
    cluster_queue: str
    local_queue: str


@pytest.fixture
def api(test_cluster: ClusterHandle) -> Iterator[client.ApiClient]:
    with test_cluster.api_client() as api_client:
        yield api_client


@pytest.fixture
def queues(test_cluster: ClusterHandle, k8s_namespace: str, api: client.ApiClient) -> Iterator[Queues]:
    """An 8-GPU H100 ClusterQueue for this test's namespace, and its LocalQueue `gpu`."""
    suffix = uuid.uuid4().hex[:6]
    flavor, cq = f"h100-{suffix}", f"cq-{suffix}"
    custom = client.CustomObjectsApi(api)
    custom.create_cluster_custom_object("kueue.x-k8s.io", "v1beta2", "resourceflavors", resource_flavor(flavor))
    custom.create_cluster_custom_object("kueue.x-k8s.io", "v1beta2", "clusterqueues",
                                        cluster_queue(cq, flavor=flavor, namespace=k8s_namespace))
    custom.create_namespaced_custom_object("kueue.x-k8s.io", "v1beta2", k8s_namespace, "localqueues",
                                           local_queue("gpu", namespace=k8s_namespace, cluster_queue=cq))
    eventually(lambda: is_true(custom.get_cluster_custom_object("kueue.x-k8s.io", "v1beta2", "clusterqueues", cq),
                               "Active"), what=f"ClusterQueue {cq} active")
    yield Queues(namespace=k8s_namespace, cluster_queue=cq, local_queue="gpu")
    test_cluster.kubectl("delete", "clusterqueue", cq, "resourceflavor", flavor, "--wait=false", check=False)


def create_job(api: client.ApiClient, namespace: str, body: dict) -> None:
    client.CustomObjectsApi(api).create_namespaced_custom_object("batch", "v1", namespace, "jobs", body)


def get_job(api: client.ApiClient, namespace: str, name: str) -> dict:
    return client.CustomObjectsApi(api).get_namespaced_custom_object("batch", "v1", namespace, "jobs", name)


def workloads(api: client.ApiClient, namespace: str) -> dict[str, dict]:
    """Workloads of the namespace, keyed by the name of the Job that owns each."""
    items = client.CustomObjectsApi(api).list_namespaced_custom_object(
        "kueue.x-k8s.io", "v1beta2", namespace, "workloads")["items"]
    return {w["metadata"]["ownerReferences"][0]["name"]: w for w in items if w["metadata"].get("ownerReferences")}


def test_one_gpu_job_is_admitted_scheduled_on_the_kwok_node_and_completes(
    test_cluster: ClusterHandle, queues: Queues, api: client.ApiClient
) -> None:
    create_job(api, queues.namespace, gpu_job("video-1", queue=queues.local_queue, gpus=2, run_seconds=2))

    wl = eventually(lambda: workloads(api, queues.namespace).get("video-1"), what="Workload for video-1")
    eventually(lambda: is_true(workloads(api, queues.namespace)["video-1"], "Admitted"), what="admission")
    assert wl["spec"]["queueName"] == queues.local_queue

    def bound_pod():
        pods = client.CoreV1Api(api).list_namespaced_pod(queues.namespace, label_selector="job-name=video-1").items
        return pods[0] if pods and pods[0].spec.node_name else None

    pod = eventually(bound_pod, what="pod bound to a node")
    assert pod.spec.node_name.startswith("gpu-node-")
    assert pod.spec.containers[0].resources.limits[GPU] == "2"
    assert pod.spec.node_selector == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}

    job = eventually(lambda: (j := get_job(api, queues.namespace, "video-1")) and is_true(j, "Complete") and j,
                     timeout=60, what="Job complete")
    assert job["status"]["succeeded"] == 1
    assert job["status"]["completedIndexes"] == "0"


def test_six_two_gpu_jobs_on_eight_gpus_admit_four_and_queue_two_in_order(
    test_cluster: ClusterHandle, queues: Queues, api: client.ApiClient
) -> None:
    names = [f"video-{i}" for i in range(6)]
    for name in names:
        create_job(api, queues.namespace, gpu_job(name, queue=queues.local_queue, gpus=2, run_seconds=15))

    def split():
        wls = workloads(api, queues.namespace)
        if len(wls) < 6:
            return None
        admitted = {n for n, w in wls.items() if is_true(w, "Admitted")}
        return (admitted, set(wls) - admitted) if len(admitted) == 4 else None

    admitted, pending = eventually(split, what="four admitted workloads")
    assert len(pending) == 2
    for name in pending:  # no quota held (Kueue v0.19 does not always write QuotaReserved=False at once)
        c = condition(workloads(api, queues.namespace)[name], "QuotaReserved")
        assert c is None or c["status"] == "False", c

    raw = test_cluster.kubectl(
        "get", "--raw", f"/apis/visibility.kueue.x-k8s.io/v1beta2/clusterqueues/{queues.cluster_queue}/pendingworkloads")
    listed = json.loads(raw.stdout)["items"]
    wl_to_job = {w["metadata"]["name"]: n for n, w in workloads(api, queues.namespace).items()}
    positions = {wl_to_job[item["metadata"]["name"]]: item["positionInClusterQueue"] for item in listed}
    assert set(positions) == pending
    assert sorted(positions.values()) == [0, 1]

    shown = test_cluster.kueuectl("list", "workload", "-n", queues.namespace).stdout
    for name in names:
        assert name in shown, shown

    def all_complete():
        return all(is_true(get_job(api, queues.namespace, n), "Complete") for n in names)

    eventually(all_complete, timeout=120, what="all six Jobs complete")


def test_job_without_a_local_queue_stays_unadmitted_with_kueues_reason(
    test_cluster: ClusterHandle, queues: Queues, api: client.ApiClient
) -> None:
    create_job(api, queues.namespace, gpu_job("orphan", queue="no-such-queue"))

    def reason():
        wl = workloads(api, queues.namespace).get("orphan")
        c = wl and condition(wl, "QuotaReserved")
        return c if c and c.get("status") == "False" else None

    c = eventually(reason, what="QuotaReserved=False on the orphan's Workload")
    assert c["reason"] == "Inadmissible"
    assert "no-such-queue" in c["message"]
    assert get_job(api, queues.namespace, "orphan")["spec"]["suspend"] is True


def test_kueue_webhook_rejects_a_queue_change_on_a_running_job(
    test_cluster: ClusterHandle, queues: Queues, api: client.ApiClient
) -> None:
    create_job(api, queues.namespace, gpu_job("running", queue=queues.local_queue, run_seconds=60))
    eventually(lambda: get_job(api, queues.namespace, "running")["spec"]["suspend"] is False, what="Job unsuspended")

    p = test_cluster.kubectl("label", "-n", queues.namespace, "job/running", "--overwrite",
                             "kueue.x-k8s.io/queue-name=elsewhere", check=False)
    assert p.returncode != 0
    assert "denied the request" in p.stderr and "kueue.x-k8s.io/queue-name" in p.stderr, p.stderr
