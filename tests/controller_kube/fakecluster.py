"""An in-memory stand-in for the API server + Kueue + kubelet, for the reconcile step's unit tests.

It admits suspended Jobs in priority-then-creation order while their GPUs fit the quota, and
`finish()` plays the job pods: it writes the result records a real pod would write to object
storage (kwok and this fake run no containers). The real control plane tests live in
tests/cluster/test_t2v_*.py.
"""

from __future__ import annotations

import copy

from jobcontract.records import Manifest, Result, manifest_key, read_manifest, write_result
from jobcontract.storage import ObjectStore


class FakeCluster:
    def __init__(self, store: ObjectStore, *, gpus: int = 8) -> None:
        self.store = store
        self.gpus = gpus
        self.jobs: dict[str, dict] = {}
        self.creates: list[str] = []
        self.deleted: list[str] = []
        self.workloads: dict[str, dict] = {}
        self.positions: dict[str, int] = {}  # visibility API: workload name -> place; {} = not served

    # JobApi
    def create_job(self, body: dict) -> bool:
        name = body["metadata"]["name"]
        self.creates.append(name)
        if name in self.jobs:
            return False
        self.jobs[name] = copy.deepcopy(body) | {"status": {}}
        return True

    def list_jobs(self) -> dict[str, dict]:
        return copy.deepcopy(self.jobs)

    def delete_job(self, name: str) -> None:
        self.deleted.append(name)
        self.jobs.pop(name, None)

    def job_workloads(self) -> dict[str, dict]:
        return copy.deepcopy(self.workloads)

    def pending_positions(self, local_queues: list[str]) -> dict[str, int]:
        return dict(self.positions)

    def job_pod_nodes(self) -> dict[tuple[str, int], str]:
        return {(n, i): "kwok-gpu-0" for n in self.running()
                for i in range(self.jobs[n]["spec"]["parallelism"])}

    # Kueue
    def _gpus(self, job: dict) -> int:
        req = job["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"]
        return int(req) * job["spec"]["parallelism"]

    def used(self) -> int:
        return sum(self._gpus(j) for j in self.jobs.values() if not j["spec"]["suspend"] and not j["status"].get("conditions"))

    def admit(self) -> list[str]:
        waiting = [j for j in self.jobs.values() if j["spec"]["suspend"]]
        waiting.sort(key=lambda j: j["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] != "t2v-interactive")
        admitted = []
        for j in waiting:
            if self.used() + self._gpus(j) <= self.gpus:
                j["spec"]["suspend"] = False
                j["status"]["active"] = j["spec"]["parallelism"]
                admitted.append(j["metadata"]["name"])
        return admitted

    def preempt(self, name: str) -> None:
        j = self.jobs[name]
        j["spec"]["suspend"] = True
        self.workloads[name] = {"status": {"conditions": [
            {"type": "Preempted", "status": "True", "reason": "InCohortReclamation",
             "message": "Preempted to accommodate a workload (UID: x) due to reclamation within the cohort"}]}}
        j["status"] = {"conditions": [{"type": "Suspended", "status": "True", "reason": "Preempted",
                                       "message": "Preempted to accommodate a workload in the same cohort"}]}

    def running(self) -> list[str]:
        return [n for n, j in self.jobs.items() if not j["spec"]["suspend"] and not j["status"].get("conditions")]

    # the pods (a stand-in: results written as a pod would)
    def finish(self, name: str, *, bad_indexes: frozenset[int] = frozenset()) -> None:
        manifest: Manifest = read_manifest(self.store, manifest_key(name))
        for item in manifest.items:
            if item.index in bad_indexes:
                write_result(self.store, item, Result(video_id=item.video_id, status="failed", attempt=item.attempt,
                                                      error_code="bad_item", error_message="stand-in: bad item"))
            else:
                write_result(self.store, item, Result(video_id=item.video_id, status="succeeded",
                                                      attempt=item.attempt, bytes=10, sha256="0" * 64, gpu="kwok"))
        cond = "Failed" if bad_indexes else "Complete"
        self.jobs[name]["status"] = {"conditions": [{"type": cond, "status": "True", "reason": "FailedIndexes"
                                                     if bad_indexes else "Completed"}]}
