"""The two queues share the node without idling it (kueue/20-clusterqueues.yaml), seen from the API.

Short and long work each have 4 of the 8 GPUs and may borrow all of the other's while it has
nothing to run. Short work takes its share back by stopping exactly one borrowing batch pod per
video; long work takes its share back as short's borrowers finish, never by stopping a person's
video, and a steady stream of short videos cannot keep it below its 4 GPUs.
"""

from __future__ import annotations

import time

import pytest

from controller.kube.jobs import LABEL_BATCH, LABEL_VIDEO
from tests.cluster.builders import condition, eventually, is_true
from tests.cluster.t2v_stack import Stack, apply_kueue, cluster_mode
from tests.plugins.cluster import ClusterHandle

pytestmark = pytest.mark.cluster

LONG = {"model": "mochi-1-preview"}  # ~163 GPU-seconds estimated: the `long` queue
SHORT = {"model": "tiny"}  # ~2 GPU-seconds: the `short` queue
NOMINAL_PODS = 2  # 4 nominal GPUs per queue, 2 per pod


@pytest.fixture(scope="module")
def kueue_applied(test_cluster: ClusterHandle) -> ClusterHandle:
    apply_kueue(test_cluster)
    return test_cluster


@pytest.fixture
def stack_factory(kueue_applied: ClusterHandle, k8s_namespace: str, tmp_path):
    def make(settings: dict | None = None, **stand_in: object):
        return cluster_mode(kueue_applied, k8s_namespace, tmp_path / "data", settings, **stand_in)
    return make


def running_pods(s: Stack, *, batch: str | None = None, queue: str | None = None) -> list:
    """Pods Running and not being stopped, of one batch or one queue (t2v.io/queue label)."""
    out = []
    for p in s.pods_of():
        labels = p.metadata.labels or {}
        if p.status.phase != "Running" or p.metadata.deletion_timestamp:
            continue
        if (batch is None or labels.get(LABEL_BATCH) == batch) and (queue is None or labels.get("t2v.io/queue") == queue):
            out.append(p)
    return out


def test_a_16_row_csv_takes_all_8_gpus_and_each_short_video_then_stops_exactly_one_of_its_pods(stack_factory) -> None:
    with stack_factory(hold=lambda item: True) as s:  # every item holds after its first step until release()
        batch, ids = s.submit_batch([{**LONG, "prompt": f"a harbour at dawn, row {i}"} for i in range(16)])
        # 4 Jobs of one 2-GPU pod (4 videos each) on an idle node: long work borrows all of short's GPUs.
        pods = eventually(lambda: (p := running_pods(s, batch=batch)) and len(p) == 4 and p, timeout=120,
                          what="4 batch pods running on all 8 GPUs")
        batch_jobs = {p.metadata.labels["batch.kubernetes.io/job-name"] for p in pods}
        assert sum(v["status"] == "in_progress" for v in s.videos(ids)) == 16

        shorts: list[str] = []
        for n in (1, 2):  # each short video takes 2 GPUs back by stopping exactly one batch pod
            shorts.append(s.submit(prompt=f"a kettle boiling, take {n}", **SHORT))
            eventually(lambda n=n: len(running_pods(s, batch=batch)) == 4 - n
                       and len(running_pods(s, queue="short")) == n
                       and all(v["status"] == "in_progress" for v in s.videos(shorts)),
                       timeout=120, what=f"short video {n} running in place of one batch pod")
            stopped = [j for j in batch_jobs if is_true(s.jobs()[j], "Suspended")]
            assert len(stopped) == n, stopped

        # Short holds its nominal 4 now and long its own 4: a third short video waits, with a position,
        # once Kueue has looked at it (QuotaReserved=False), and no third batch pod is stopped for it.
        third = s.submit(prompt="a kettle boiling, take 3", **SHORT)

        def verdict() -> bool:
            jobs = [n for n, j in s.jobs().items() if j["metadata"]["labels"].get(LABEL_VIDEO) == third]
            c = jobs and (wl := s.workloads().get(jobs[0])) and condition(wl, "QuotaReserved")
            return bool(c and c["status"] == "False")

        eventually(verdict, timeout=60, what="Kueue's verdict on the third short video")
        assert s.video(third)["status"] == "queued" and s.video(third)["queue_position"] == 1
        assert len(running_pods(s, batch=batch)) == 2
        assert sum(is_true(s.jobs()[j], "Suspended") for j in batch_jobs) == 2

        # The stopped pods' videos went back to queued with Kueue's words; the others kept running.
        back = [v for v in s.videos(ids) if v["status"] == "queued"]
        assert len(back) == 8, [(v["id"], v["status"]) for v in s.videos(ids)]
        for v in back:
            last = s.events(v["id"])[-1]
            assert last["reason"].startswith("preempted by Kueue: InCohortReclamation"), last

        s.pods.release()
        vids = s.wait_terminal(ids + shorts + [third], timeout=180)
        assert {v["status"] for v in vids} == {"completed"}, [(v["id"], v["status"]) for v in vids]
        runs = s.pods.finished()
        killed = [r for r in runs if r.killed]
        assert len(killed) == 2 and {r.job for r in killed} <= batch_jobs
        for r in killed:
            # The stopped pod checkpointed the item it was denoising (step 1: items hold after it) and the
            # next pod of the same Job index went on from there.
            [(vid, step)] = r.saved.items()
            assert step == 1
            after = [q for q in runs if q.job == r.job and q.index == r.index and not q.killed]
            assert [q.resumed.get(vid) for q in after] == [1]
            assert s.video(vid)["timings"]["resumed_at_step"] == 1
        assert s.pods.foreign == [] and s.pods.errors == []


def test_a_steady_stream_of_short_videos_leaves_long_work_its_nominal_share(stack_factory) -> None:
    # Short videos run 3 s each (a pod turnover is ~1.2 s here, so most of the time all of short's
    # pods are Running); long items hold until release(), so long's GPUs are easy to count.
    with stack_factory(run_seconds=lambda item: 3.0, hold=lambda item: item.model == LONG["model"]) as s:
        stream: list[str] = []
        waiting: set[str] = set()

        def top_up() -> None:
            """Keep 4 short videos waiting: more than short work can start between two calls."""
            waiting.difference_update(v["id"] for v in s.videos(sorted(waiting)) if v["status"] != "queued")
            while len(waiting) < 4:
                vid = s.submit(prompt=f"a paper plane, throw {len(stream)}", **SHORT)
                stream.append(vid)
                waiting.add(vid)

        # With nothing else to run, the stream takes the whole node: short borrows all of long's GPUs.
        eventually(lambda: top_up() or len(running_pods(s, queue="short")) == 4, timeout=120,
                   what="the short stream on all 8 GPUs")

        batch, ids = s.submit_batch([{**LONG, "prompt": f"a long pan over dunes, row {i}"} for i in range(16)])
        # Long gets its nominal 4 GPUs back as the stream's pods end (Kueue gives freed GPUs to the queue
        # that is not borrowing first), while the stream goes on ...
        eventually(lambda: top_up() or len(running_pods(s, batch=batch)) == NOMINAL_PODS, timeout=60,
                   what="long work back at its nominal 2 pods (4 GPUs) under the stream")
        # ... and keeps exactly that: short keeps its own 4 and the stream waits for them, for as long as
        # it lasts (several generations of short pods).
        seen_short: set[str] = set()
        for _ in range(20):
            top_up()
            assert len(running_pods(s, batch=batch)) == NOMINAL_PODS
            short_pods = running_pods(s, queue="short")
            assert len(short_pods) <= NOMINAL_PODS
            seen_short.update(p.metadata.name for p in short_pods)
            time.sleep(0.5)
        assert len(seen_short) > 2 * NOMINAL_PODS, seen_short  # the stream really went on meanwhile

        # Long work never stopped a person's video to get there: no short pod was killed, no short video
        # went back to queued.
        s.pods.release()
        vids = s.wait_terminal(stream + ids, timeout=180)
        assert {v["status"] for v in vids} == {"completed"}, [(v["id"], v["status"]) for v in vids]
        assert not [r for r in s.pods.finished() if r.killed and set(r.items) & set(stream)]
        for vid in stream:
            assert ("in_progress", "queued") not in [(e["from"], e["to"]) for e in s.events(vid)]
        assert s.pods.foreign == [] and s.pods.errors == []
