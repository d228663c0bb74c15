"""Two controller processes on one Lease, the leader SIGKILLed while it dispatches and watches.

Real `t2v controller` processes, real PostgreSQL, the real control plane; the job pods carry kwok's
stage annotations (T2V_JOB_POD_ANNOTATIONS) and `PodWork` does their work. After every kill the
other replica takes over and a new replica starts; in the end no video is lost and none ever had a
second Job. Both replicas serve /metrics: the leader says so and counts, the follower says it is not.
"""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from controller.kube.api import KubeJobApi
from controller.kube.leader import KubeLeaseApi
from tests.cluster.builders import eventually
from tests.controller_kube.kube import PodWork
from tests.controller_kube.replicas import leader_pid
from tests.plugins.cluster import ClusterHandle
from webapp.app import create_app

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]


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
