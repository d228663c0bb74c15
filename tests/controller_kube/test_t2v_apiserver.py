"""The Kubernetes adapter against a real API server: Jobs accepted by server-side validation,
watch, cancel, Lease leader election.

Runs on the loopback control plane of scripts/testcluster (fixtures `test_cluster`,
`k8s_namespace`). Nothing here runs containers.
"""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient

from webapp.app import create_app

pytestmark = [pytest.mark.cluster]


@pytest.fixture
def namespace(monkeypatch, test_cluster, k8s_namespace: str) -> str:
    from kubernetes import client, config

    monkeypatch.setenv("KUBECONFIG", test_cluster.kubeconfig)
    config.load_kube_config(test_cluster.kubeconfig)
    client.CoreV1Api().create_namespaced_service_account(
        k8s_namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="t2v-job")))
    return k8s_namespace


def test_jobs_leases_watch_against_a_real_api_server(tmp_path, namespace) -> None:
    from controller.main import build_controller
    from controller.settings import ControllerSettings

    s = ControllerSettings(data_dir=tmp_path / "data", auth_required=False, namespace=namespace,
                           lease_seconds=3, renew_seconds=1)
    with TestClient(create_app(s)) as api:
        ids = [api.post("/v1/videos", json={"prompt": "x"}).json()["id"] for _ in range(3)]
        csv = "prompt\n" + "".join(f"p{i}\n" for i in range(20))
        assert api.post("/v1/batches", files={"file": ("b.csv", csv.encode(), "text/csv")}).status_code == 200
        c1, c2 = build_controller(s), build_controller(s)
        c1.reconcile_once()
        c2.reconcile_once()
        assert c1.is_leader() and not c2.is_leader()
        jobs = c1.api.list_jobs()
        # accepted as built: 3 single videos, and the batch as 5 one-pod Jobs of 4 videos
        assert sorted((j["spec"]["completions"], j["metadata"]["annotations"]["t2v.io/video-ids"].count(",") + 1)
                      for j in jobs.values()) == [(1, 1)] * 3 + [(1, 4)] * 5
        assert all(j["spec"]["suspend"] for j in jobs.values())
        c1.reconcile_once()  # a second pass makes no second Job
        assert len(c1.api.list_jobs()) == 8
        assert [api.get(f"/v1/videos/{i}").json()["queue_position"] for i in ids] == [1, 2, 3]

        c1.watch.timeout_seconds = 10
        t = threading.Thread(target=c1.watch.step)
        t.start()
        time.sleep(1)
        c1.wake.clear()
        assert api.post(f"/v1/videos/{ids[0]}/cancel").status_code == 200
        c1.reconcile_once()
        t.join(timeout=20)
        assert c1.wake.is_set()  # the Job deletion came through the watch
        assert len(c1.api.list_jobs()) == 7
        assert api.get(f"/v1/videos/{ids[0]}").json()["status"] == "cancelled"

        time.sleep(4.5)  # c1 stops renewing: c2 takes over after the lease ends
        assert c2.is_leader()
