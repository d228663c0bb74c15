"""Cluster mode end to end, from the public HTTP API inward, on the real loopback control plane.

Each test submits through the API while `KubeController` runs against kube-apiserver + Kueue
(configured by kueue/) and the kwok pod stand-in plays the job image; the API must then tell the
truth about what Kueue and the pods did.
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import pytest

from controller.kube.jobs import LABEL_BATCH
from jobcontract.records import ExitCode, video_keys
from tests.cluster.builders import condition, eventually, is_true
from tests.cluster.t2v_stack import apply_kueue, cluster_mode
from tests.plugins.cluster import ClusterHandle

pytestmark = pytest.mark.cluster

LONG = {"model": "mochi-1-preview"}  # defaults: ~163 GPU-seconds estimated, so the `long` queue
SHORT = {"model": "tiny"}  # ~2 GPU-seconds: the `short` queue
NODE = "gpu-node-0"


@pytest.fixture(scope="module")
def kueue_applied(test_cluster: ClusterHandle) -> ClusterHandle:
    apply_kueue(test_cluster)
    return test_cluster


@pytest.fixture
def stack_factory(kueue_applied: ClusterHandle, k8s_namespace: str, tmp_path: Path):
    """cluster_mode() for this test's namespace; stand-in options as keyword arguments."""
    def make(settings: dict | None = None, **stand_in: object):
        return cluster_mode(kueue_applied, k8s_namespace, tmp_path / "data", settings, **stand_in)
    return make


@pytest.mark.parametrize("body", [SHORT, LONG], ids=["short", "long"])
def test_six_videos_four_run_on_the_kwok_node_two_wait_with_kueue_positions_then_all_complete(
        stack_factory, body: dict) -> None:
    """Either queue's work may use all 8 GPUs while the other has none: 4 pods of 2 GPUs, not 3."""
    with stack_factory(hold=lambda item: True) as s:  # pods stay Running until release()
        ids = [s.submit(prompt=f"a lighthouse in a storm, take {i}", **body) for i in range(6)]
        assert {s.video(i)["queue"] for i in ids} == {"short" if body is SHORT else "long"}

        def split():
            vids = s.videos(ids)
            running = [v for v in vids if v["status"] == "in_progress"]
            waiting = [v for v in vids if v["status"] == "queued" and v["queue_position"]]
            pods = [p for p in s.pods_of() if p.status.phase == "Running"]
            # Running videos show the pods' progress records (the held items are at denoising step 1).
            live = [v for v in running if v["progress"] > 0]
            # Until the controller has Kueue's places, a dispatched video shows our own count (1).
            places = sorted(v["queue_position"] for v in waiting)
            return (running, waiting, pods) if len(live) == 4 and places == [1, 2] and len(pods) == 4 else None

        running, waiting, pods = eventually(split, timeout=120,
                                            what="4 videos running with progress, 2 waiting at 1 and 2")
        assert {p.spec.node_name for p in pods} == {NODE}
        assert all(p.spec.containers[0].resources.requests["nvidia.com/gpu"] == "2" for p in pods)

        # The positions are Kueue's (visibility API, pending workloads of the LocalQueue), not the DB's
        # guess: the same two Workloads, the same numbers. (Read until the list has both: while a
        # scheduling cycle tries the head, Kueue lists only the other; the controller mends that,
        # controller/kube/backend.py kueue_places.)
        kueue = eventually(lambda: len(p := s.controller.api.pending_positions(["short", "long"])) == 2 and p,
                           what="Kueue's list with both waiting Workloads")
        wl_by_job = s.workloads()
        assert {wl_by_job[s.job_of(v["id"])]["metadata"]["name"]: v["queue_position"] for v in waiting} == kueue

        s.pods.release()
        vids = s.wait_terminal(ids)
        assert [v["status"] for v in vids] == ["completed"] * 6, vids
        for v in vids:
            assert v["progress"] == 100 and v["queue_position"] is None
            content = s.api.get(f"/v1/videos/{v['id']}/content")
            assert content.status_code == 200
            assert content.content[4:8] == b"ftyp"  # an MP4 the stand-in encoded with the job image's code
            assert hashlib.sha256(content.content).hexdigest() == v["sha256"]
        runs = s.pods.finished()
        assert len(runs) == 6 and {r.exit_code for r in runs} == {0} and {r.node for r in runs} == {NODE}
        assert s.pods.foreign == [] and s.pods.errors == []


def test_a_20_prompt_csv_is_one_indexed_job_and_its_one_bad_item_fails_alone(stack_factory) -> None:
    bad_row = 6  # in index 1 (4 items per pod): its 3 neighbours must still complete
    # 300 words pass the API's 4,000-character check, but are over Mochi's 256 T5 tokens: only the
    # pod (with the tokenizer) can tell, so it fails the item and exits 42 (ExitCode.BAD_ITEM).
    prompts = [" ".join(["fog"] * 300) if i == bad_row else f"a paper boat on a canal, shot {i}" for i in range(20)]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["prompt"])
    w.writerows([p] for p in prompts)
    last, oom_row = prompts[-1], 13  # index 3
    # The last item (index 4) waits until release(): the rest of the batch must not wait for it.
    # Row 13 runs out of GPU memory in the first pod of index 3 (exit 75): the Job retries that index.
    # One Job of 5 pods for the batch (by default a batch is Jobs of one pod each: batch_pods_per_job).
    with stack_factory({"batch_pods_per_job": 8}, hold=lambda item: item.prompt == last,
                       oom=lambda item, try_no: item.prompt == prompts[oom_row] and try_no == 1) as s:
        r = s.api.post("/v1/batches", files={"file": ("prompts.csv", buf.getvalue().encode(), "text/csv")})
        assert r.status_code == 200, r.text
        batch = r.json()
        assert batch["counts"]["total"] == 20
        listed = s.api.get("/v1/videos", params={"batch_id": batch["id"], "limit": 100, "order": "asc"}).json()["data"]
        ids = [v["id"] for v in listed]
        assert [v["prompt"] for v in listed] == prompts

        # Each video is settled when its index ends, while the Job still runs index 4: a user sees the
        # batch finish video by video (and a later preemption cannot send finished videos back to queued).
        early = s.wait_terminal(ids[:16], timeout=150)
        assert {v["status"] for v in s.videos(ids[16:])} == {"in_progress"}
        assert not is_true(s.jobs()[s.pods.running()[0].job], "Failed")
        assert sum(v["status"] == "completed" for v in early) == 15

        s.pods.release()
        vids = s.wait_terminal(ids, timeout=150)
        by_status = {st: [v for v in vids if v["status"] == st] for st in ("completed", "failed")}
        assert len(by_status["completed"]) == 19, [(v["id"], v["status"], v["error"]) for v in vids]
        [failed] = by_status["failed"]
        assert failed["id"] == ids[bad_row]
        assert failed["error"]["code"] == "invalid_input"
        assert "301 T5 tokens is over Mochi's limit of 256" in failed["error"]["message"], failed["error"]

        # One indexed Job for the whole batch; the bad index failed at once (FailIndex on exit 42, no
        # retry), index 3 was retried once after exit 75 (backoffLimitPerIndex) and succeeded, the other
        # indexes succeeded at once, and one failed index stayed under maxFailedIndexes.
        jobs = [j for j in s.jobs().values() if j["metadata"]["labels"].get(LABEL_BATCH) == batch["id"]]
        assert len(jobs) == 1, sorted(s.jobs())
        job = jobs[0]
        spec, status = job["spec"], job["status"]
        assert spec["completionMode"] == "Indexed" and spec["completions"] == 5
        assert status.get("failedIndexes") == "1" and status.get("completedIndexes") == "0,2-4", status
        assert status.get("failed") == 2 and status.get("succeeded") == 4, status
        assert is_true(job, "Failed"), status
        assert condition(job, "Failed")["reason"] == "FailedIndexes", status
        index1 = [p for p in s.pods_of(job["metadata"]["name"])
                  if p.metadata.annotations.get("batch.kubernetes.io/job-completion-index") == "1"]
        assert len(index1) == 1, [p.metadata.name for p in index1]
        assert index1[0].status.container_statuses[0].state.terminated.exit_code == ExitCode.BAD_ITEM
        runs = s.pods.finished()
        assert sorted((r.index, r.try_no, r.exit_code) for r in runs) == [
            (0, 1, 0), (1, 1, int(ExitCode.BAD_ITEM)), (2, 1, 0), (3, 1, int(ExitCode.RETRYABLE)), (3, 2, 0), (4, 1, 0)]
        oomed = s.events(ids[oom_row])
        assert [e["to"] for e in oomed][-1] == "completed" and vids[oom_row]["status"] == "completed"
        assert s.pods.foreign == [] and s.pods.errors == []
        b = s.api.get(f"/v1/batches/{batch['id']}").json()
        assert b["status"] == "completed" and b["counts"]["completed"] == 19 and b["counts"]["failed"] == 1, b


def test_short_work_reclaims_its_gpus_from_long_work_and_the_preempted_videos_requeue_then_complete(
        stack_factory) -> None:
    # Every item waits until release(), so nothing finishes in between and Kueue's choice is plain:
    # long work borrowed short's 4 GPUs, short work arrives and takes back exactly what it needs.
    with stack_factory(hold=lambda item: True) as s:
        long_ids = [s.submit(prompt=f"a glacier calving, reel {i}", **LONG) for i in range(4)]
        eventually(lambda: all(v["status"] == "in_progress" for v in s.videos(long_ids)) and
                   len([p for p in s.pods_of() if p.status.phase == "Running"]) == 4,
                   timeout=120, what="4 long videos running on all 8 GPUs")
        long_jobs = {i: s.job_of(i) for i in long_ids}

        short_ids = [s.submit(prompt=f"a match being struck, take {i}", **SHORT) for i in range(2)]

        def reclaimed():
            longs, shorts = s.videos(long_ids), s.videos(short_ids)
            back = [v["id"] for v in longs if v["status"] == "queued"]
            running = [p for p in s.pods_of() if p.status.phase == "Running" and not p.metadata.deletion_timestamp]
            ok = (len(back) == 2 and sum(v["status"] == "in_progress" for v in longs) == 2
                  and all(v["status"] == "in_progress" for v in shorts) and len(running) == 4)
            return back if ok else None

        back = eventually(reclaimed, timeout=120, what="2 long videos preempted back to queued, 2 short running")
        for vid in back:
            last = s.events(vid)[-1]
            assert (last["from"], last["to"]) == ("in_progress", "queued"), last
            # Kueue's own words, from the Workload's Preempted condition.
            assert last["reason"].startswith("preempted by Kueue: InCohortReclamation"), last
            assert "t2v-short" in last["reason"] and "queued again" in last["reason"], last
            assert is_true(s.jobs()[long_jobs[vid]], "Suspended")

        s.pods.release()
        shorts, longs = s.wait_terminal(short_ids, timeout=120), s.wait_terminal(long_ids, timeout=150)
        assert [v["status"] for v in shorts + longs] == ["completed"] * 6, shorts + longs
        # The preempted videos resumed in the same Job (Kueue unsuspended it), without using a retry.
        for vid in back:
            assert s.job_of(vid) == long_jobs[vid]
            job = s.jobs()[long_jobs[vid]]
            assert is_true(job, "Complete") and not job["status"].get("failed"), job["status"]
        # Their pods were stopped as a kubelet stops them (SIGTERM, 143); no other pod was.
        runs = s.pods.finished()
        killed = {r.job for r in runs if r.killed}
        assert killed <= {long_jobs[v] for v in back}, (killed, back)
        assert s.pods.foreign == [] and s.pods.errors == []
        # Each stopped pod checkpointed the step its item had reached (the first: items hold after it),
        # the next pod went on from there, and the checkpoint went once the video was done.
        store = s.api.app.state.store
        for vid in back:
            assert [r.saved.get(vid) for r in runs if r.killed and vid in r.items] == [1], runs
            assert [r.resumed.get(vid) for r in runs if not r.killed and vid in r.items] == [1], runs
            assert s.video(vid)["timings"]["resumed_at_step"] == 1
            assert not store.exists(video_keys(vid)["checkpoint"])
        assert all("resumed_at_step" not in v["timings"] for v in shorts + longs if v["id"] not in back)
