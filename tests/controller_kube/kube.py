"""What the controller tests need around the real control plane: queues for a test namespace, pod
annotations that make kwok run the job pods quickly, and a stand-in for the work a job pod does.

kwok runs no containers, so something has to do what the jobimage would: `PodWork` writes the
result records a pod writes to object storage, then lets kwok end the pod (exit 0) or ends it as a
kubelet would report a failed container (exit 42, a bad item). Everything else (Jobs, Kueue admission,
preemption, scheduling, the Job controller's per-index retries, garbage collection) is the real thing.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes import client

from controller.kube.api import SELECTOR
from jobcontract.records import ExitCode, Result, manifest_key, read_manifest, write_result
from jobcontract.storage import ObjectStore
from tests.cluster.builders import eventually, is_true
from tests.plugins.cluster import ClusterHandle

REPO = Path(__file__).resolve().parents[2]
KUEUE = ("kueue.x-k8s.io", "v1beta2")
COMPLETE_DELAY = "pod-complete.stage.kwok.x-k8s.io/delay"
COMPLETE_JITTER = "pod-complete.stage.kwok.x-k8s.io/jitter-delay"


def kwok_pod_annotations() -> dict[str, str]:
    """kwok stage delays for `job_pod_annotations`: a pod starts within ~0.2 s, runs until `PodWork` ends it.

    kwok's default is 1 s plus up to 5 s jitter per stage (create, init container running and
    completed, ready, complete). A jitter equal to the delay makes it exact; kwok re-reads the
    annotations when the pod changes, so patching the complete delay to 0 ends the pod at once.
    """
    fast = {f"{stage}.stage.kwok.x-k8s.io/{key}": "50ms"
            for stage in ("pod-create", "pod-init-container-running", "pod-init-container-completed", "pod-ready")
            for key in ("delay", "jitter-delay")}
    return fast | {COMPLETE_DELAY: "1h", COMPLETE_JITTER: "1h"}


@dataclass(frozen=True)
class Queues:
    """A ClusterQueue of its own for one test namespace, with the LocalQueues the controller names."""

    namespace: str
    cluster_queue: str
    flavor: str


def make_queues(test_cluster: ClusterHandle, namespace: str, *, gpus: int = 8) -> Queues:
    """Flavor + ClusterQueue (8 GPUs, lower priority preempted) + LocalQueues short/long + priorities.

    A ClusterQueue per test keeps quota from leaking between tests; kueue/ as shipped (two queues in
    a cohort) is proven in tests/cluster/test_manifests.py.
    """
    suffix = uuid.uuid4().hex[:6]
    flavor, cq = f"h100-{suffix}", f"cq-{suffix}"
    res = [{"name": "cpu", "nominalQuota": "128"}, {"name": "memory", "nominalQuota": "1Ti"},
           {"name": "nvidia.com/gpu", "nominalQuota": str(gpus)}]
    docs = [
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": flavor},
         "spec": {"nodeLabels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}}},
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue", "metadata": {"name": cq},
         "spec": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                  "queueingStrategy": "BestEffortFIFO",
                  "preemption": {"withinClusterQueue": "LowerPriority"},
                  "resourceGroups": [{"coveredResources": ["cpu", "memory", "nvidia.com/gpu"],
                                      "flavors": [{"name": flavor, "resources": res}]}]}},
        *({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
           "metadata": {"name": lq, "namespace": namespace}, "spec": {"clusterQueue": cq}} for lq in ("short", "long")),
        # The job pods' ServiceAccount (manifests/base/rbac.yaml makes it in the t2v namespace).
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "t2v-job", "namespace": namespace},
         "automountServiceAccountToken": False},
    ]
    test_cluster.kubectl("apply", "--server-side", "-f", str(REPO / "kueue" / "30-priorities.yaml"))
    test_cluster.kubectl("apply", "-f", "-", input="\n---\n".join(yaml.safe_dump(d) for d in docs))
    with test_cluster.api_client() as api:
        custom = client.CustomObjectsApi(api)
        eventually(lambda: is_true(custom.get_cluster_custom_object(*KUEUE, "clusterqueues", cq), "Active"),
                   timeout=60, what=f"ClusterQueue {cq} active")
        for lq in ("short", "long"):
            eventually(lambda lq=lq: is_true(custom.get_namespaced_custom_object(*KUEUE, namespace, "localqueues", lq),
                                             "Active"), timeout=60, what=f"LocalQueue {lq} active")
    return Queues(namespace=namespace, cluster_queue=cq, flavor=flavor)


def drop_queues(test_cluster: ClusterHandle, q: Queues) -> None:
    test_cluster.kubectl("delete", "clusterqueue", q.cluster_queue, "resourceflavor", q.flavor, "--wait=false",
                         check=False)


class PodWork:
    """Does a job pod's part: result records to object storage, then the pod ends (via kwok or as failed)."""

    def __init__(self, api: client.ApiClient, namespace: str, store: ObjectStore) -> None:
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.namespace, self.store = namespace, store
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None
        self._worker: threading.Thread | None = None

    def __enter__(self) -> PodWork:
        """Also play the kubelet for deleted pods: the container exits at SIGTERM, the pod goes.

        kwok alone removes a deleted pod at a random moment within its 30 s grace period, which
        would make preemption and cancel tests wait for nothing.
        """
        self._reaper = threading.Thread(target=self._reap, name="pod-reaper", daemon=True)
        self._reaper.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in (self._reaper, self._worker):
            if t is not None:
                t.join(timeout=10)

    def clear(self) -> None:
        """Delete every Job of the namespace and wait for their pods to go, freeing the node's GPUs
        for the next test (a namespace deletion takes kwok up to the pods' 30 s grace period)."""
        self.batch.delete_collection_namespaced_job(self.namespace, propagation_policy="Background")
        eventually(lambda: not self.pods(), timeout=60, what=f"pods of {self.namespace} gone")

    def work_in_background(self, run_seconds: float) -> None:
        """From now on, every pod ends (its results written) after running `run_seconds`."""
        def loop() -> None:
            while not self._stop.wait(0.2):
                try:
                    for p in list(self.running()):
                        started = p.status.start_time
                        if started and time.time() - started.timestamp() >= run_seconds:
                            self.run_pod(p)
                except client.ApiException:
                    pass  # a pod or its Job went away meanwhile; the next round sees what is left

        self._worker = threading.Thread(target=loop, name="pod-work", daemon=True)
        self._worker.start()

    def run_pod(self, pod) -> None:
        """What one pod does: the results of its index's items, then exit 0."""
        labels = pod.metadata.labels
        self.write_results(labels["batch.kubernetes.io/job-name"],
                           indexes={int(labels["batch.kubernetes.io/job-completion-index"])})
        self.end_pod(pod)

    def _reap(self) -> None:
        while not self._stop.wait(0.2):
            try:
                for p in self.pods():
                    if p.metadata.deletion_timestamp:
                        self.core.delete_namespaced_pod(p.metadata.name, self.namespace, grace_period_seconds=0)
            except client.ApiException:
                pass  # gone already, or the namespace is being deleted

    def pods(self, job: str | None = None) -> list:
        sel = f"batch.kubernetes.io/job-name={job}" if job else SELECTOR
        return self.core.list_namespaced_pod(self.namespace, label_selector=sel).items

    def running(self) -> Iterator:
        """Pods kwok holds Running (not yet ended by us)."""
        for p in self.pods():
            if (p.status.phase == "Running" and not p.metadata.deletion_timestamp
                    and (p.metadata.annotations or {}).get(COMPLETE_DELAY) == "1h"):
                yield p

    def write_results(self, job: str, *, bad_indexes: frozenset[int] = frozenset(),
                      indexes: set[int] | None = None) -> None:
        """The records the pods of `job` write: succeeded, or failed (bad item) for `bad_indexes`."""
        manifest = read_manifest(self.store, manifest_key(job))
        for item in manifest.items:
            if indexes is not None and item.index not in indexes:
                continue
            if item.index in bad_indexes:
                r = Result(video_id=item.video_id, status="failed", attempt=item.attempt, error_code="bad_item",
                           error_message="stand-in: this item is invalid")
            else:
                r = Result(video_id=item.video_id, status="succeeded", attempt=item.attempt, bytes=10,
                           sha256="0" * 64, gpu="kwok")
            write_result(self.store, item, r)

    def end_pod(self, pod, *, exit_code: int = 0) -> None:
        """Exit 0: kwok completes the pod now. Otherwise report the container failed, as a kubelet would."""
        name = pod.metadata.name
        if exit_code == 0:
            self.core.patch_namespaced_pod(name, self.namespace, {"metadata": {"annotations": {
                COMPLETE_DELAY: "0s", COMPLETE_JITTER: "0s"}}})
            return
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        c = pod.spec.containers[0]
        self.core.patch_namespaced_pod_status(name, self.namespace, {"status": {
            "phase": "Failed",
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now}],
            "containerStatuses": [{"name": c.name, "image": c.image, "imageID": "", "ready": False,
                                   "restartCount": 0, "started": False,
                                   "state": {"terminated": {"exitCode": exit_code, "reason": "Error",
                                                            "startedAt": now, "finishedAt": now}}}]}})

    def finish(self, job: str, *, bad_indexes: frozenset[int] = frozenset(), timeout: float = 90) -> dict:
        """Run every index of `job` to its end (pods of later indexes start as earlier ones end)."""
        self.write_results(job, bad_indexes=bad_indexes)

        def step():
            j = self.batch.read_namespaced_job(job, self.namespace)
            conds = {c.type for c in j.status.conditions or [] if c.status == "True"}
            if conds & {"Complete", "Failed"}:
                return j
            for p in self.pods(job):
                if p.status.phase == "Running" and (p.metadata.annotations or {}).get(COMPLETE_DELAY) == "1h":
                    index = int(p.metadata.labels["batch.kubernetes.io/job-completion-index"])
                    self.end_pod(p, exit_code=int(ExitCode.BAD_ITEM) if index in bad_indexes else 0)
            return None

        return eventually(step, timeout=timeout, what=f"Job {job} finished")
