"""t2v in cluster mode on the loopback control plane: API + KubeController + kwok pod stand-in.

`cluster_mode()` wires what production runs: the FastAPI app with `T2V_BACKEND=kubernetes`
(temp SQLite, local object store), the controller from `controller.main.build_controller` (Lease,
Job watch, reconcile loop) on a thread, Kueue configured by `kubectl apply --server-side -f kueue/`,
and `scripts.harness.standin.PodStandIn` running the Job pods that kwok only pretends to run.
"""

from __future__ import annotations

import csv
import io
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from fastapi.testclient import TestClient
from kubernetes import client

from controller.kube.jobs import LABEL_VIDEO
from controller.kube.controller import KubeController
from controller.main import build_controller
from controller.settings import ControllerSettings
from tests.cluster.builders import eventually, is_true
from tests.plugins.cluster import ClusterHandle
from scripts.harness.standin import PodStandIn
from webapp.app import create_app

REPO = Path(__file__).resolve().parents[2]
KUEUE_DIR = REPO / "kueue"
CLUSTER_QUEUES = ("t2v-short", "t2v-long")
NAMESPACE_LABEL = "t2v.io/kueue=enabled"  # the ClusterQueues' namespaceSelector (kueue/20-clusterqueues.yaml)
GROUP, VERSION = "kueue.x-k8s.io", "v1beta2"


def apply_kueue(cluster: ClusterHandle) -> None:
    """`kubectl apply --server-side -f kueue/` as docs/operations.md says, then wait for the queues."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(KUEUE_DIR))
    with cluster.api_client() as api:
        custom = client.CustomObjectsApi(api)
        for cq in CLUSTER_QUEUES:
            eventually(lambda cq=cq: is_true(custom.get_cluster_custom_object(GROUP, VERSION, "clusterqueues", cq),
                                             "Active"), what=f"ClusterQueue {cq} active")


def local_queues(namespace: str) -> list[dict]:
    """The LocalQueues of kueue/ (made for namespace `t2v`), for another namespace."""
    docs = []
    for path in sorted(KUEUE_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "LocalQueue":
                doc["metadata"]["namespace"] = namespace
                docs.append(doc)
    return docs


def enable_namespace(cluster: ClusterHandle, namespace: str) -> None:
    """Label a fresh namespace as kueue/ expects and give it the same LocalQueues as `t2v`."""
    cluster.kubectl("label", "namespace", namespace, NAMESPACE_LABEL)
    cluster.kubectl("apply", "--server-side", "-f", "-",
                    input="\n---\n".join(yaml.safe_dump(d) for d in local_queues(namespace)))
    with cluster.api_client() as api:
        custom = client.CustomObjectsApi(api)
        for lq in local_queues(namespace):
            name = lq["metadata"]["name"]
            eventually(lambda name=name: is_true(custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, "localqueues", name), "Active"), what=f"LocalQueue {name} active")


def wait_queues_idle(cluster: ClusterHandle, timeout: float = 90) -> None:
    """No workload holds or waits for quota in t2v's ClusterQueues (an earlier test's Jobs are gone)."""
    with cluster.api_client() as api:
        custom = client.CustomObjectsApi(api)

        def idle():
            busy = {}
            for cq in CLUSTER_QUEUES:
                st = custom.get_cluster_custom_object(GROUP, VERSION, "clusterqueues", cq).get("status") or {}
                n = (st.get("reservingWorkloads") or 0) + (st.get("pendingWorkloads") or 0)
                if n:
                    busy[cq] = n
            return not busy or None

        eventually(idle, timeout=timeout, what="t2v ClusterQueues idle")


@dataclass
class Stack:
    """One running cluster-mode t2v: talk to it through `api` like a client would."""

    api: TestClient
    controller: KubeController
    pods: PodStandIn
    namespace: str
    settings: ControllerSettings
    k8s: client.ApiClient

    def video(self, video_id: str) -> dict:
        r = self.api.get(f"/v1/videos/{video_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def videos(self, ids: list[str]) -> list[dict]:
        return [self.video(i) for i in ids]

    def events(self, video_id: str) -> list[dict]:
        r = self.api.get(f"/v1/videos/{video_id}/events")
        assert r.status_code == 200, r.text
        return r.json()["data"]

    def submit(self, **body: object) -> str:
        r = self.api.post("/v1/videos", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "queued"
        return r.json()["id"]

    def submit_batch(self, rows: list[dict]) -> tuple[str, list[str]]:
        """POST /v1/batches with a CSV of `rows` (dicts of column -> value); the batch id and its video
        ids in row order."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=sorted({k for r in rows for k in r}))
        w.writeheader()
        w.writerows(rows)
        r = self.api.post("/v1/batches", files={"file": ("rows.csv", buf.getvalue().encode(), "text/csv")})
        assert r.status_code == 200, r.text
        batch = r.json()["id"]
        listed = self.api.get("/v1/videos", params={"batch_id": batch, "limit": 100, "order": "asc"}).json()["data"]
        assert len(listed) == len(rows), listed
        return batch, [v["id"] for v in listed]

    def jobs(self) -> dict[str, dict]:
        items = client.CustomObjectsApi(self.k8s).list_namespaced_custom_object(
            "batch", "v1", self.namespace, "jobs")["items"]
        return {j["metadata"]["name"]: j for j in items}

    def job_of(self, video_id: str) -> str:
        """The Job of a single video, found by its `t2v.io/video-id` label as an operator would."""
        names = [n for n, j in self.jobs().items() if j["metadata"]["labels"].get(LABEL_VIDEO) == video_id]
        assert len(names) == 1, names
        return names[0]

    def workloads(self) -> dict[str, dict]:
        """Kueue Workloads by the name of the Job that owns each."""
        items = client.CustomObjectsApi(self.k8s).list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "workloads")["items"]
        return {ref["name"]: w for w in items for ref in w["metadata"].get("ownerReferences") or []
                if ref.get("kind") == "Job"}

    def pods_of(self, job: str | None = None) -> list[client.V1Pod]:
        selector = "app.kubernetes.io/managed-by=t2v-controller"
        if job:
            selector += f",batch.kubernetes.io/job-name={job}"
        return client.CoreV1Api(self.k8s).list_namespaced_pod(self.namespace, label_selector=selector).items

    def wait_terminal(self, ids: list[str], *, timeout: float = 150) -> list[dict]:
        """Every video ended (completed, failed or cancelled); returns them as the API shows them."""
        def done():
            vs = self.videos(ids)
            return vs if all(v["status"] in ("completed", "failed", "cancelled") for v in vs) else None

        try:
            return eventually(done, timeout=timeout, what=f"{len(ids)} videos terminal")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.diagnose(ids)}") from None

    def diagnose(self, ids: list[str]) -> str:
        """What the API, the Jobs, Kueue and the stand-in say now: for a failure message."""
        lines = [f"videos: {[(v['id'], v['status'], v['queue_position']) for v in self.videos(ids)]}"]
        for name, job in self.jobs().items():
            st = job.get("status") or {}
            lines.append(f"job {name}: suspend={job['spec'].get('suspend')} parallelism={job['spec'].get('parallelism')}"
                         f" active={st.get('active')} succeeded={st.get('succeeded')} failed={st.get('failed')}"
                         f" conditions={[(c['type'], c['status'], c.get('reason')) for c in st.get('conditions') or []]}")
        for name, wl in self.workloads().items():
            conds = [(c["type"], c["status"], c.get("message")) for c in (wl.get("status") or {}).get("conditions") or []]
            lines.append(f"workload of {name}: {conds}")
        lines.append(f"stand-in: runs={[(r.pod, r.exit_code) for r in self.pods.runs]} foreign={self.pods.foreign}"
                     f" errors={self.pods.errors}")
        return "\n".join(lines)


@contextmanager
def cluster_mode(cluster: ClusterHandle, namespace: str, data_dir: Path, settings: dict | None = None,
                 **stand_in: object) -> Iterator[Stack]:
    """Run API, controller and pod stand-in against `namespace` until the block ends; `settings`
    overrides ControllerSettings fields."""
    enable_namespace(cluster, namespace)
    wait_queues_idle(cluster)
    settings = ControllerSettings(
        data_dir=data_dir, backend="kubernetes", auth_required=False, namespace=namespace,
        resync_seconds=1.0,  # a pass per second: the tests wait on it (default 2 s)
        watch_timeout_seconds=10,  # the Job watch thread ends soon after stop()
        **(settings or {}),
    )
    old = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = cluster.kubeconfig  # KubeJobApi reads it when built
    try:
        controller = build_controller(settings)
    finally:
        if old is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = old
    with cluster.api_client() as k8s, TestClient(create_app(settings)) as api, \
            PodStandIn(k8s, namespace, **stand_in) as pods:
        thread = threading.Thread(target=controller.run_forever, name="t2v-controller", daemon=True)
        thread.start()
        try:
            yield Stack(api=api, controller=controller, pods=pods, namespace=namespace, settings=settings, k8s=k8s)
        finally:
            controller.stop()
            thread.join(timeout=30)
            # Free the ClusterQueues for the next test: the namespace goes later, without waiting.
            cluster.kubectl("delete", "jobs", "--all", "-n", namespace, "--wait=false", check=False)
