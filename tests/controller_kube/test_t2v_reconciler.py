"""The reconcile step from the public API inward, against the real control plane.

kube-apiserver, the Job controller, the scheduler, Kueue (admission, preemption, visibility API) and
kwok (pods on a fake 8-GPU node) are real, and so is the controller with its Job client; its job
pods carry kwok's stage annotations (setting `job_pod_annotations`). `PodWork`
(tests/controller_kube/kube.py) does what the job pod's container would: result records to object
storage, then the pod ends.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from kubernetes import client
from sqlmodel import select

from controller.kube.api import KubeJobApi
from controller.kube.controller import KubeController
from controller.kube.watch import JobWatch
from controller.settings import ControllerSettings
from tests.cluster.builders import eventually
from tests.controller_kube.kube import PodWork, drop_queues, kwok_pod_annotations, make_queues
from tests.plugins.cluster import ClusterHandle
from webapp.app import create_app
from core.db import session_for
from core.models import Video

pytestmark = pytest.mark.cluster


@dataclass
class Env:
    settings: ControllerSettings
    api: TestClient  # the service's public API
    work: PodWork
    kube: client.ApiClient

    @property
    def namespace(self) -> str:
        return self.settings.namespace

    def controller(self, job_api: KubeJobApi | None = None, **kw) -> KubeController:
        """A fresh controller (what a restarted process builds) with the real Job client."""
        return KubeController(self.settings, self.api.app.state.store, job_api or KubeJobApi(self.namespace), **kw)

    def jobs(self) -> dict[str, dict]:
        return KubeJobApi(self.namespace).list_jobs()


@pytest.fixture
def env(tmp_path, monkeypatch, test_cluster: ClusterHandle, k8s_namespace: str) -> Iterator[Env]:
    monkeypatch.setenv("KUBECONFIG", test_cluster.kubeconfig)  # KubeJobApi reads it at construction
    queues = make_queues(test_cluster, k8s_namespace)
    # Both LocalQueues lead to the test's one 8-GPU ClusterQueue: either may hold all 8. These tests
    # exercise a batch as one indexed Job of several pods; the default of one pod per batch Job has
    # its own test (test_by_default_a_batch_is_jobs_of_one_pod...). They script the order of Job
    # creations, so one at a time (the default of 4 side by side has its crash test below).
    settings = ControllerSettings(data_dir=tmp_path / "data", auth_required=False, namespace=k8s_namespace,
                                  short_queue_max_gpus=8, long_queue_max_gpus=8, batch_pods_per_job=8,
                                  dispatch_concurrency=1,
                                  job_pod_annotations=kwok_pod_annotations())
    try:
        with (TestClient(create_app(settings)) as api, test_cluster.api_client() as kube,
              PodWork(kube, k8s_namespace, api.app.state.store) as work):
            yield Env(settings, api, work, kube)
            work.clear()
    finally:
        drop_queues(test_cluster, queues)


def submit(api: TestClient, **body) -> str:
    r = api.post("/v1/videos", json={"prompt": "a lighthouse at dusk", **body})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def submit_csv(api: TestClient, n: int) -> str:
    csv = "prompt\n" + "".join(f"prompt number {i}\n" for i in range(n))
    r = api.post("/v1/batches", files={"file": ("b.csv", csv.encode(), "text/csv")})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def statuses(api: TestClient, ids: list[str]) -> list[dict]:
    return [api.get(f"/v1/videos/{i}").json() for i in ids]


def all_videos(api: TestClient) -> list[dict]:
    return api.get("/v1/videos?limit=100").json()["data"]


def events(api: TestClient, vid: str) -> list[dict]:
    return api.get(f"/v1/videos/{vid}/events").json()["data"]


def run_to_the_end(env: Env, c: KubeController, *, timeout: float = 90) -> list[dict]:
    """Reconcile while the pods do their work, until every video is terminal."""
    def done():
        c.reconcile_once()
        for p in list(env.work.running()):
            env.work.run_pod(p)
        vs = all_videos(env.api)
        return vs if all(v["status"] in ("completed", "failed", "cancelled") for v in vs) else None

    return eventually(done, timeout=timeout, what="every video terminal")


def one_job_each(env: Env, ids: list[str]) -> None:
    """Every video ran in exactly one Job (attempt 1): no second Job was ever made for it."""
    jobs = env.jobs()
    owners: dict[str, list[str]] = {}
    for name, j in jobs.items():
        for vid in j["metadata"]["annotations"]["t2v.io/video-ids"].split(","):
            owners.setdefault(vid, []).append(name)
    assert {v: len(owners.get(v, [])) for v in ids} == {v: 1 for v in ids}, owners
    assert all(name.endswith("-a1") for name in jobs), sorted(jobs)


def test_six_videos_four_run_two_wait_with_positions_all_complete(env: Env) -> None:
    c = env.controller()
    ids = [submit(env.api) for _ in range(6)]
    c.reconcile_once()
    assert len(env.jobs()) == 6

    def split():
        c.reconcile_once()
        vs = statuses(env.api, ids)
        running = [v for v in vs if v["status"] == "in_progress"]
        with session_for(env.settings.db_url) as s:
            nodes = {v.id: v.node for v in s.exec(select(Video)).all()}
        if len(running) == 4 and all(nodes[v["id"]] for v in running):
            return vs, nodes
        return None

    vs, nodes = eventually(split, what="4 videos running on the node, 2 waiting")  # 8 GPUs / 2 per pod
    assert sorted(nodes[v["id"]] or "" for v in vs) == [""] * 2 + ["gpu-node-0"] * 4
    waiting = [v for v in vs if v["status"] == "queued"]
    assert sorted(v["queue_position"] for v in waiting) == [1, 2]
    assert {v["status"] for v in run_to_the_end(env, c)} == {"completed"}
    one_job_each(env, ids)


def test_csv_batch_is_one_indexed_job_and_a_bad_index_fails_alone(env: Env) -> None:
    c = env.controller()
    submit_csv(env.api, 20)
    c.reconcile_once()
    (name, job), = env.jobs().items()
    assert job["spec"]["completions"] == 5 and job["spec"]["parallelism"] == 4
    finished = env.work.finish(name, bad_indexes=frozenset({2}))  # index 2's pod exits 42: FailIndex
    assert finished.status.failed_indexes == "2" and finished.status.completed_indexes == "0,1,3,4"
    c.reconcile_once()
    videos = all_videos(env.api)
    assert len(videos) == 20
    failed = [v for v in videos if v["status"] == "failed"]
    assert len(failed) == 4  # the 4 items of index 2, nothing else
    assert sum(v["status"] == "completed" for v in videos) == 16


class Crash(Exception):
    """The controller process dies here."""


@pytest.mark.parametrize("concurrency", [1, 4])
@pytest.mark.parametrize("when", ["before_the_server_saw_it", "after_the_server_made_it"])
def test_crash_mid_dispatch_recreates_the_same_job_never_a_second(env: Env, when: str, concurrency: int) -> None:
    env.settings = env.settings.model_copy(update={"dispatch_concurrency": concurrency})
    ids = [submit(env.api) for _ in range(3)]

    class DiesOnSecondCreate(KubeJobApi):
        calls = itertools.count(1)  # atomic: creations may run side by side

        def create_job(self, body: dict) -> bool:
            if next(self.calls) == 2:
                if when == "after_the_server_made_it":
                    super().create_job(body)  # made, but the process died before it heard back
                raise Crash
            return super().create_job(body)

    with pytest.raises(Crash):
        env.controller(DiesOnSecondCreate(env.namespace)).reconcile_once()
    with session_for(env.settings.db_url) as s:
        claimed = [v for v in s.exec(select(Video)).all() if v.job_name]
    made = len(env.jobs())
    if concurrency == 1:  # claim, create, claim, create: the crash stopped the second unit
        assert len(claimed) == 2  # the rows were claimed (names stored) before their Jobs were made
        assert made == (2 if when == "after_the_server_made_it" else 1)
    else:  # all three claimed first, then created side by side; the second creation died
        assert len(claimed) == 3
        assert made == (3 if when == "after_the_server_made_it" else 2)

    c2 = env.controller()  # the restarted controller
    c2.reconcile_once()
    c2.reconcile_once()
    assert len(env.jobs()) == 3
    assert {v["status"] for v in run_to_the_end(env, c2)} == {"completed"}
    one_job_each(env, ids)


def test_preempted_batch_is_queued_again_with_kueues_reason_then_completes(env: Env) -> None:
    c = env.controller()
    submit_csv(env.api, 16)  # 4 indexes x 2 GPUs: the whole ClusterQueue, at batch priority
    c.reconcile_once()
    (batch_job,) = env.jobs()
    eventually(lambda: c.reconcile_once() or all(v["status"] == "in_progress" for v in all_videos(env.api)),
               what="batch running")
    single = submit(env.api)  # interactive: Kueue preempts the batch to make room
    c.reconcile_once()

    def preempted():
        c.reconcile_once()
        vs = {v["id"]: v for v in all_videos(env.api)}
        batch = [v for i, v in vs.items() if i != single]
        return batch if all(v["status"] == "queued" for v in batch) else None

    batch = eventually(preempted, what="batch videos queued again after preemption")
    why = [e["reason"] for e in events(env.api, batch[0]["id"]) if e["to"] == "queued"][-1]
    assert why.startswith("preempted by Kueue: ") and "queued again" in why, why

    def single_running():
        c.reconcile_once()
        return statuses(env.api, [single])[0]["status"] == "in_progress"

    eventually(single_running, what="the interactive video admitted in the batch's place")
    final = run_to_the_end(env, c)
    assert {v["status"] for v in final} == {"completed"}
    assert len(env.jobs()) == 2 and batch_job in env.jobs()  # the same Job resumed, none made anew


def test_by_default_a_batch_is_jobs_of_one_pod_and_a_short_video_stops_only_one(env: Env) -> None:
    """The shipped shape (batch_pods_per_job = 1): Kueue admits a batch pod by pod, and making room
    for an interactive video evicts one 2-GPU Job, not the whole batch (docs/performance.md, fleet)."""
    default = ControllerSettings.model_fields["batch_pods_per_job"].default
    assert default == 1
    c = KubeController(env.settings.model_copy(update={"batch_pods_per_job": default}), env.api.app.state.store,
                       KubeJobApi(env.namespace))
    batch = submit_csv(env.api, 16)  # 4 Jobs x 2 GPUs: the whole ClusterQueue, at batch priority
    c.reconcile_once()
    listed = env.api.get("/v1/videos", params={"batch_id": batch, "limit": 100, "order": "asc"}).json()["data"]
    jobs = env.jobs()
    units = sorted(j["metadata"]["annotations"]["t2v.io/video-ids"].split(",") for j in jobs.values())
    assert units == sorted([v["id"] for v in listed[i:i + 4]] for i in range(0, 16, 4))  # 4 per pod, in order
    assert {(j["spec"]["completions"], j["spec"]["parallelism"]) for j in jobs.values()} == {(1, 1)}
    assert {j["metadata"]["labels"]["t2v.io/batch-id"] for j in jobs.values()} == {batch}
    eventually(lambda: c.reconcile_once() or all(v["status"] == "in_progress" for v in all_videos(env.api)),
               what="the batch's 4 pods running")
    single = submit(env.api)  # interactive: Kueue needs 2 GPUs back
    c.reconcile_once()

    def one_evicted():
        c.reconcile_once()
        vs = {v["id"]: v for v in all_videos(env.api)}
        if vs[single]["status"] != "in_progress":
            return None
        return [i for i, v in vs.items() if i != single and v["status"] == "queued"]

    requeued = eventually(one_evicted, what="the interactive video running in one batch pod's place")
    assert set(requeued) in [set(u) for u in units], requeued  # exactly one unit's 4 videos are queued again
    assert sum(v["status"] == "in_progress" for v in all_videos(env.api)) == 13  # 12 of the batch + 1
    final = run_to_the_end(env, c)
    assert {v["status"] for v in final} == {"completed"}
    assert len(env.jobs()) == 5  # the evicted Job resumed; none made anew


def test_cancel_deletes_the_job_and_its_pods(env: Env) -> None:
    c = env.controller()
    vid = submit(env.api)
    c.reconcile_once()
    (name,) = env.jobs()
    eventually(lambda: [p for p in env.work.pods(name) if p.status.phase == "Running"], what="pod running")
    assert env.api.post(f"/v1/videos/{vid}/cancel").status_code == 200
    c.reconcile_once()
    assert env.jobs() == {}
    eventually(lambda: not env.work.pods(name), what="pods gone (background propagation)")
    c.reconcile_once()
    v = statuses(env.api, [vid])[0]
    assert v["status"] == "cancelled"
    assert [e["to"] for e in events(env.api, vid)][-1] == "cancelled"


def test_batch_cancel_stops_its_job(env: Env) -> None:
    c = env.controller()
    batch = submit_csv(env.api, 8)
    c.reconcile_once()
    (name,) = env.jobs()
    eventually(lambda: len([p for p in env.work.pods(name) if p.status.phase == "Running"]) == 2,
               what="both pods running")
    env.work.write_results(name, indexes={0})  # index 0 finished its items before the cancel
    assert env.api.post(f"/v1/batches/{batch}/cancel").status_code == 200
    c.reconcile_once()
    assert env.jobs() == {}
    eventually(lambda: not env.work.pods(name), what="pods gone")
    c.reconcile_once()
    assert {v["status"] for v in all_videos(env.api)} == {"cancelled"}


def test_follower_does_nothing_while_another_holds_the_lease(env: Env) -> None:
    from controller.kube.leader import KubeLeaseApi, LeaderElector, LeaseRecord

    leases = KubeLeaseApi(env.namespace, env.settings.lease_name)
    assert leases.create(LeaseRecord(holder="the-other-replica", renew_time=time.time(), lease_seconds=60))
    elector = LeaderElector(leases, identity="me", lease_seconds=15, renew_seconds=1)
    submit(env.api)
    env.controller(is_leader=elector.is_leader).reconcile_once()
    assert env.jobs() == {}
    assert leases.read().holder == "the-other-replica"


def test_a_pass_longer_than_the_lease_renews_it_or_stops_acting(env: Env) -> None:
    from controller.kube.leader import KubeLeaseApi, LeaderElector

    class Clock:  # turned by hand: a Job creation "takes" seconds of a 3 s lease
        t = float(int(time.time()))

        def __call__(self) -> float:
            return self.t

    clock, b_leads = Clock(), []

    def elector(identity: str) -> LeaderElector:
        return LeaderElector(KubeLeaseApi(env.namespace, env.settings.lease_name), identity=identity,
                             lease_seconds=3, renew_seconds=1, clock=clock)

    a, b = elector("a"), elector("b")

    class Slow(KubeJobApi):
        step = 2.0

        def create_job(self, body: dict) -> bool:
            made = super().create_job(body)
            clock.t += self.step
            b_leads.append(b.is_leader())  # the other replica tries all along
            return made

    for _ in range(4):
        submit(env.api)
    slow = Slow(env.namespace)
    env.controller(slow, is_leader=a.is_leader).reconcile_once()  # 8 s of creating on a 3 s lease
    assert len(env.jobs()) == 4 and b_leads == [False] * 4  # a renewed as it went: b never led

    ids = [submit(env.api) for _ in range(4)]
    slow.step, b_leads[:] = 4.0, []  # one creation outlasts the lease: b takes over meanwhile
    env.controller(slow, is_leader=a.is_leader).reconcile_once()
    assert b_leads == [True] and len(env.jobs()) == 5  # a saw it had lost the Lease and made no more
    env.controller(is_leader=b.is_leader).reconcile_once()
    assert len(env.jobs()) == 8
    with session_for(env.settings.db_url) as s:
        assert all(v.job_name for v in s.exec(select(Video).where(Video.id.in_(ids))).all())


def test_job_that_ran_and_ended_between_two_passes_completes(env: Env) -> None:
    c = env.controller()
    vid = submit(env.api)
    c.reconcile_once()
    (name,) = env.jobs()
    env.work.finish(name)  # admitted, ran, completed: the controller saw none of it
    c.reconcile_once()
    assert statuses(env.api, [vid])[0]["status"] == "completed"
    assert [e["to"] for e in events(env.api, vid)] == ["queued", "in_progress", "completed"]


def test_late_job_states_never_move_a_finished_video_backwards(env: Env) -> None:
    c = env.controller()
    done, gone = submit(env.api), submit(env.api)
    c.reconcile_once()
    names = {j["metadata"]["labels"]["t2v.io/video-id"]: n for n, j in env.jobs().items()}
    eventually(lambda: c.reconcile_once() or {v["status"] for v in statuses(env.api, [done, gone])} == {"in_progress"},
               what="both running")
    stale = KubeJobApi(env.namespace).list_jobs()  # what the server said while both ran
    env.work.finish(names[done])
    assert env.api.post(f"/v1/videos/{gone}/cancel").status_code == 200
    c.reconcile_once()
    before = statuses(env.api, [done, gone])
    assert [v["status"] for v in before] == ["completed", "cancelled"]

    class Late(KubeJobApi):
        def list_jobs(self) -> dict[str, dict]:
            return stale  # an answer from before the Job finished, arriving now

    env.controller(Late(env.namespace)).reconcile_once()
    after = statuses(env.api, [done, gone])
    assert [(v["status"], v["progress"]) for v in after] == [("completed", 100), ("cancelled", before[1]["progress"])]
    assert [e["to"] for e in events(env.api, done)] == ["queued", "in_progress", "completed"]


def test_run_forever_is_woken_by_job_events_and_stops(env: Env) -> None:
    # A long resync: only the Job watch can make it react within seconds.
    s = env.settings.model_copy(update={"resync_seconds": 120})
    jobs = KubeJobApi(env.namespace)
    c = KubeController(s, env.api.app.state.store, jobs,
                       watch=JobWatch(jobs.list_version, jobs.watch_jobs, threading.Event(), timeout_seconds=10))
    vid = submit(env.api)
    t = threading.Thread(target=c.run_forever)
    t.start()
    try:
        eventually(lambda: statuses(env.api, [vid])[0]["status"] == "in_progress", timeout=30,
                   what="admission seen through the watch")
        (name,) = env.jobs()
        env.work.finish(name)
        eventually(lambda: statuses(env.api, [vid])[0]["status"] == "completed", timeout=30,
                   what="completion seen through the watch")
    finally:
        c.stop()
        t.join(timeout=40)
    assert not t.is_alive()


def test_queue_positions_come_from_kueues_visibility_api(env: Env) -> None:
    c = env.controller()
    running = [submit(env.api) for _ in range(4)]  # fill the 8 GPUs
    c.reconcile_once()
    eventually(lambda: c.reconcile_once() or all(v["status"] == "in_progress" for v in statuses(env.api, running)),
               what="4 running")
    batch = submit_csv(env.api, 8)  # waits: one Workload for its 8 videos
    c.reconcile_once()
    late = submit(env.api)  # interactive, after the batch: Kueue puts it first (priority)
    c.reconcile_once()

    def places():
        c.reconcile_once()
        # What the controller wrote (the API shows its own count where the controller wrote none).
        with session_for(env.settings.db_url) as s:
            got = {v.id: v.queue_position for v in s.exec(select(Video).where(Video.status == "queued")).all()}
        # Kueue places a Workload, not a video: all 8 of the batch share its place, behind the later
        # interactive one. The DB order would have numbered them 2..9.
        if len(got) == 9 and got.pop(late) == 1 and set(got.values()) == {2}:
            return got
        return None

    got = eventually(places, what="Kueue's places: the late interactive video 1st, the batch's Workload 2nd")
    assert {v["batch_id"] for v in all_videos(env.api) if v["id"] in got} == {batch}
