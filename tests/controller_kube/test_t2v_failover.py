"""Two controller processes on one Lease, the leader SIGKILLed while it dispatches and watches.

Real `t2v controller` processes, real PostgreSQL, the real control plane; the job pods carry kwok's
stage annotations (T2V_JOB_POD_ANNOTATIONS) and `PodWork` does their work. After every kill the
other replica takes over and a new replica starts; in the end no video is lost and none ever had a
second Job. Both replicas serve /metrics: the leader says so and counts, the follower says it is not.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from kubernetes import config

from controller.kube.api import KubeJobApi
from controller.kube.leader import KubeLeaseApi
from controller.settings import ControllerSettings
from tests.cluster.builders import eventually
from tests.controller_kube.kube import REPO, PodWork, drop_queues, kwok_pod_annotations, make_queues
from tests.plugins.cluster import ClusterHandle
from tests.support.metrics import scrape
from scripts.harness.net import free_port
from webapp.app import create_app

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]


class Replicas:
    """Controller processes, by pid, with their logs."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: dict[int, subprocess.Popen] = {}
        self.metrics_ports: dict[int, int] = {}  # pid -> its T2V_METRICS_ADDRESS port

    def start(self) -> int:
        log = open(self.logs / f"controller-{len(self.procs)}.log", "w")  # noqa: SIM115 - lives with the process
        port = free_port()
        p = subprocess.Popen([str(Path(sys.executable).parent / "t2v"), "controller"], cwd=REPO,
                             env={**self.env, "T2V_METRICS_ADDRESS": f"127.0.0.1:{port}"},
                             stdout=log, stderr=subprocess.STDOUT)
        self.procs[p.pid] = p
        self.metrics_ports[p.pid] = port
        return p.pid

    def metric(self, pid: int, name: str) -> float | None:
        """A label-less sample of replica `pid`'s /metrics; None if it has none by that name."""
        return scrape(f"http://127.0.0.1:{self.metrics_ports[pid]}/metrics").get((name, frozenset()))

    def kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)
        self.procs[pid].wait(timeout=10)

    def alive(self) -> list[int]:
        return [pid for pid, p in self.procs.items() if p.poll() is None]

    def stop_all(self) -> None:
        for pid in self.alive():
            self.procs[pid].send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def leader_pid(leases: KubeLeaseApi, replicas: Replicas) -> int | None:
    """The pid in the Lease holder's identity (`<host>-<pid>-<random>`), if that process is alive."""
    rec = leases.read()
    if rec is None or not rec.holder or rec.renew_time + rec.lease_seconds < time.time():
        return None
    pid = int(rec.holder.rsplit("-", 2)[1])
    return pid if pid in replicas.alive() else None


@pytest.fixture
def cluster_mode(tmp_path, monkeypatch, test_cluster: ClusterHandle, k8s_namespace: str,
                 postgres_url: str) -> Iterator[tuple[ControllerSettings, Replicas]]:
    monkeypatch.setenv("KUBECONFIG", test_cluster.kubeconfig)
    config.load_kube_config(test_cluster.kubeconfig)  # for KubeLeaseApi here, as KubeJobApi does in the replicas
    queues = make_queues(test_cluster, k8s_namespace)
    env = {**os.environ, "KUBECONFIG": test_cluster.kubeconfig, "T2V_NAMESPACE": k8s_namespace,
           "T2V_DATA_DIR": str(tmp_path / "data"), "T2V_DATABASE_URL": postgres_url, "T2V_AUTH_REQUIRED": "false",
           # 3 s lease, 1 s renew: a take-over within seconds; 1 s resync bounds what a lost event costs.
           "T2V_LEASE_SECONDS": "3", "T2V_RENEW_SECONDS": "1", "T2V_RESYNC_SECONDS": "1",
           "T2V_WATCH_TIMEOUT_SECONDS": "10", "T2V_JOB_POD_ANNOTATIONS": json.dumps(kwok_pod_annotations()),
           # both LocalQueues lead to the test's one 8-GPU ClusterQueue
           "T2V_SHORT_QUEUE_MAX_GPUS": "8", "T2V_LONG_QUEUE_MAX_GPUS": "8"}
    settings = ControllerSettings(data_dir=tmp_path / "data", database_url=postgres_url, auth_required=False,
                                  namespace=k8s_namespace, short_queue_max_gpus=8, long_queue_max_gpus=8,
                                  job_pod_annotations=kwok_pod_annotations())
    replicas = Replicas(env, tmp_path)
    try:
        yield settings, replicas
    finally:
        replicas.stop_all()
        drop_queues(test_cluster, queues)


def test_leader_killed_mid_dispatch_and_mid_watch_loses_nothing_and_makes_no_second_job(
        cluster_mode, test_cluster: ClusterHandle) -> None:
    settings, replicas = cluster_mode
    leases = KubeLeaseApi(settings.namespace, settings.lease_name)
    with (TestClient(create_app(settings)) as api, test_cluster.api_client() as kube,
          PodWork(kube, settings.namespace, api.app.state.store) as work):
        def submit(n: int) -> list[str]:
            return [api.post("/v1/videos", json={"prompt": f"take {i}"}).json()["id"] for i in range(n)]

        def csv(n: int) -> None:
            body = "prompt\n" + "".join(f"row {i}\n" for i in range(n))
            assert api.post("/v1/batches", files={"file": ("b.csv", body.encode(), "text/csv")}).status_code == 200

        def new_leader(old: int | None) -> int:
            return eventually(lambda: (pid := leader_pid(leases, replicas)) and pid != old and pid,
                              timeout=60, what="a (new) leader")

        work.work_in_background(run_seconds=1.5)
        replicas.start()
        replicas.start()
        first = new_leader(None)
        submit(6)
        csv(8)
        # Mid-watch: Jobs made, pods running, the watch open.
        eventually(lambda: len(KubeJobApi(settings.namespace).list_jobs()) >= 3, timeout=60, what="first Jobs")
        # Leader and follower both answer /metrics; only the leader acts (and counts Jobs it made).
        follower = next(pid for pid in replicas.alive() if pid != first)
        eventually(lambda: replicas.metric(first, "t2v_controller_leader") == 1
                   and replicas.metric(follower, "t2v_controller_leader") == 0, what="leader gauges")
        assert replicas.metric(first, "t2v_controller_last_full_pass_timestamp_seconds") > 0
        assert replicas.metric(follower, "t2v_controller_last_full_pass_timestamp_seconds") == 0
        replicas.kill(first)
        submit(4)  # for the next leader to dispatch
        replicas.start()
        second = new_leader(first)
        # Mid-dispatch, most likely: the new leader's first passes claim rows and create Jobs.
        time.sleep(0.3)
        replicas.kill(second)
        submit(4)
        replicas.start()
        new_leader(second)

        def settled():
            vs = api.get("/v1/videos?limit=100").json()["data"]
            return vs if len(vs) == 22 and all(v["status"] == "completed" for v in vs) else None

        videos = eventually(settled, timeout=120, what="all 22 videos completed")
        jobs = KubeJobApi(settings.namespace).list_jobs()
        alive = len(replicas.alive())
        replicas.stop_all()
        work.clear()

    owners: dict[str, list[str]] = {}
    for name, j in jobs.items():
        for vid in j["metadata"]["annotations"]["t2v.io/video-ids"].split(","):
            owners.setdefault(vid, []).append(name)
    assert {v["id"]: len(owners.get(v["id"], [])) for v in videos} == {v["id"]: 1 for v in videos}, owners
    assert all(name.endswith("-a1") for name in jobs)  # nobody ran again: no retry was needed
    assert alive == 2
