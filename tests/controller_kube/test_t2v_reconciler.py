"""The reconcile step from the public API inward, against an in-memory API server + Kueue.

kwok and the fake run no containers: a stand-in (FakeCluster.finish) writes the result records to
object storage that the job pod would write.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from controller.kube.reconciler import KubeController
from controller.settings import ControllerSettings
from tests.controller_kube.fakecluster import FakeCluster
from webapp.app import create_app
from webapp.db import session_for
from webapp.models import Video


@pytest.fixture
def settings(tmp_path) -> ControllerSettings:
    return ControllerSettings(data_dir=tmp_path / "data", auth_required=False)


@pytest.fixture
def api(settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def cluster(api) -> FakeCluster:
    return FakeCluster(api.app.state.store)


def ctl(settings, api, cluster) -> KubeController:
    return KubeController(settings, api.app.state.store, cluster)


def submit(api: TestClient, **body) -> str:
    r = api.post("/v1/videos", json={"prompt": "a lighthouse at dusk", **body})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def statuses(api: TestClient, ids: list[str]) -> list[dict]:
    return [api.get(f"/v1/videos/{i}").json() for i in ids]


def test_six_videos_four_run_two_wait_with_positions_all_complete(settings, api, cluster) -> None:
    c = ctl(settings, api, cluster)
    ids = [submit(api) for _ in range(6)]
    c.reconcile_once()
    assert len(cluster.jobs) == 6
    assert len(cluster.admit()) == 4
    c.reconcile_once()
    vs = statuses(api, ids)
    assert [v["status"] for v in vs].count("in_progress") == 4
    waiting = [v for v in vs if v["status"] == "queued"]
    with session_for(settings.db_url) as s:
        nodes = {v.id: v.node for v in s.exec(select(Video)).all()}
    assert sorted(nodes[v["id"]] or "" for v in vs) == [""] * 2 + ["kwok-gpu-0"] * 4
    assert sorted(v["queue_position"] for v in waiting) == [1, 2]
    for _ in range(3):
        for name in cluster.running():
            cluster.finish(name)
        c.reconcile_once()
        cluster.admit()
        c.reconcile_once()
    assert {v["status"] for v in statuses(api, ids)} == {"completed"}
    assert len(cluster.creates) == 6


def test_csv_batch_is_one_indexed_job_and_a_bad_index_fails_alone(settings, api, cluster) -> None:
    c = ctl(settings, api, cluster)
    csv = "prompt\n" + "".join(f"prompt number {i}\n" for i in range(20))
    r = api.post("/v1/batches", files={"file": ("b.csv", csv.encode(), "text/csv")})
    assert r.status_code == 200, r.text
    c.reconcile_once()
    assert len(cluster.jobs) == 1
    (name, job), = cluster.jobs.items()
    assert job["spec"]["completions"] == 5
    cluster.admit()
    c.reconcile_once()
    cluster.finish(name, bad_indexes=frozenset({2}))
    c.reconcile_once()
    videos = api.get("/v1/videos?limit=100").json()["data"]
    assert len(videos) == 20
    failed = [v for v in videos if v["status"] == "failed"]
    assert len(failed) == 4  # the 4 items of index 2, nothing else
    assert sum(v["status"] == "completed" for v in videos) == 16


def test_crash_between_claim_and_create_recreates_the_same_job(settings, api, cluster) -> None:
    vid = submit(api)

    class Crash(Exception):
        pass

    def boom(body):
        raise Crash

    real = cluster.create_job
    cluster.create_job = boom
    with pytest.raises(Crash):
        ctl(settings, api, cluster).reconcile_once()
    cluster.create_job = real
    c2 = ctl(settings, api, cluster)  # the restarted controller
    c2.reconcile_once()
    c2.reconcile_once()
    assert len(cluster.jobs) == 1
    cluster.admit()
    c2.reconcile_once()
    cluster.finish(next(iter(cluster.jobs)))
    c2.reconcile_once()
    assert statuses(api, [vid])[0]["status"] == "completed"


def test_preempted_work_is_queued_again_then_completes(settings, api, cluster) -> None:
    c = ctl(settings, api, cluster)
    vid = submit(api)
    c.reconcile_once()
    cluster.admit()
    c.reconcile_once()
    assert statuses(api, [vid])[0]["status"] == "in_progress"
    name = next(iter(cluster.jobs))
    cluster.preempt(name)
    c.reconcile_once()
    v = statuses(api, [vid])[0]
    assert v["status"] == "queued"
    events = api.get(f"/v1/videos/{vid}/events").json()
    assert "reclamation within the cohort" in str(events)
    cluster.jobs[name]["status"] = {}
    cluster.admit()
    c.reconcile_once()
    cluster.finish(name)
    c.reconcile_once()
    assert statuses(api, [vid])[0]["status"] == "completed"


def test_cancel_deletes_the_job(settings, api, cluster) -> None:
    c = ctl(settings, api, cluster)
    vid = submit(api)
    c.reconcile_once()
    assert api.post(f"/v1/videos/{vid}/cancel").status_code == 200
    c.reconcile_once()
    assert cluster.deleted == list(cluster.creates)
    assert statuses(api, [vid])[0]["status"] == "cancelled"


def test_follower_does_nothing(settings, api, cluster) -> None:
    submit(api)
    KubeController(settings, api.app.state.store, cluster, is_leader=lambda: False).reconcile_once()
    assert cluster.jobs == {}


def test_job_that_ran_and_ended_between_two_passes_completes(settings, api, cluster) -> None:
    c = ctl(settings, api, cluster)
    vid = submit(api)
    c.reconcile_once()
    cluster.admit()
    cluster.finish(next(iter(cluster.jobs)))
    c.reconcile_once()
    v = statuses(api, [vid])[0]
    assert v["status"] == "completed"


def test_run_forever_dispatches_and_stops(settings, api, cluster) -> None:
    import threading
    import time

    c = ctl(settings, api, cluster)
    submit(api)
    t = threading.Thread(target=c.run_forever)
    t.start()
    deadline = time.monotonic() + 10
    while not cluster.jobs and time.monotonic() < deadline:
        time.sleep(0.05)
    c.stop()
    t.join(timeout=10)
    assert not t.is_alive() and len(cluster.jobs) == 1


def test_queue_positions_come_from_kueue_visibility_when_served(settings, api, cluster) -> None:
    c = ctl(settings, api, cluster)
    a, b = submit(api), submit(api)
    c.reconcile_once()
    names = {j["metadata"]["labels"]["t2v.io/video-id"]: n for n, j in cluster.jobs.items()}
    for name in names.values():
        cluster.workloads[name] = {"metadata": {"name": f"job-{name}-x"}}
    # Kueue says b is ahead of a (e.g. a higher priority or an earlier requeue)
    cluster.positions = {f"job-{names[b]}-x": 1, f"job-{names[a]}-x": 2}
    c.reconcile_once()
    assert [v["queue_position"] for v in statuses(api, [a, b])] == [2, 1]
