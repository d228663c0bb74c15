"""The controller's /metrics on the real control plane: the numbers move as Kueue and the pods do.

The controller runs as in production (Lease, Job watch, reconcile loop) and serves its registry
over HTTP with `serve_metrics`, as `t2v controller` does; the test reads it as Prometheus would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.main import serve_metrics
from tests.cluster.builders import eventually
from tests.cluster.t2v_stack import Stack, apply_kueue, cluster_mode
from tests.plugins.cluster import ClusterHandle
from tests.support.metrics import scrape, total
from core.costmodel import work_units

pytestmark = pytest.mark.cluster

LONG = {"model": "mochi-1-preview"}  # the `long` queue (see test_t2v_cluster_mode.py)
SHORT = {"model": "tiny"}
NODE = "gpu-node-0"
READY_LABEL = "t2v.io/model-cache-ready"  # the h100 overlay's T2V_MODEL_READY_NODE_LABEL


@pytest.fixture(scope="module")
def kueue_applied(test_cluster: ClusterHandle) -> ClusterHandle:
    apply_kueue(test_cluster)
    return test_cluster


class Scraper:
    """Reads the controller's metrics endpoint like Prometheus."""

    def __init__(self, stack: Stack) -> None:
        self.server = serve_metrics("127.0.0.1:0", stack.controller.metrics.registry)
        self.url = f"http://127.0.0.1:{self.server.server_port}/metrics"

    def total(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        return total(scrape(self.url), name, **labels)

    def until(self, expected: dict[tuple, float], timeout: float = 120) -> None:
        """Wait until every (name, {labels}) reads its expected value; the failure says what was read."""
        def read():
            samples = scrape(self.url)
            return {key: total(samples, key[0], **dict(key[1])) for key in expected}

        try:
            eventually(lambda: read() == expected or None, timeout=timeout, what="metrics")
        except AssertionError:
            raise AssertionError(f"metrics: expected {expected}, read {read()}") from None


def key(name: str, **labels: str) -> tuple:
    return name, tuple(sorted(labels.items()))


@pytest.fixture
def stack_factory(kueue_applied: ClusterHandle, k8s_namespace: str, tmp_path: Path):
    def make(settings: dict | None = None, **stand_in: object):
        return cluster_mode(kueue_applied, k8s_namespace, tmp_path / "data", settings, **stand_in)
    return make


@pytest.fixture
def scraper_for() -> Iterator:
    made: list[Scraper] = []

    def make(stack: Stack) -> Scraper:
        made.append(Scraper(stack))
        return made[-1]

    yield make
    for s in made:
        s.server.shutdown()
        s.server.server_close()


def test_waiting_admission_preemption_and_resume_metrics_follow_kueue(stack_factory, scraper_for) -> None:
    # Pods stay Running until release(), then take 2 s: long enough for a pass to see each run.
    with stack_factory(hold=lambda item: True, run_seconds=2.0) as s:
        m = scraper_for(s)
        long_ids = [s.submit(prompt=f"a glacier calving, reel {i}", **LONG) for i in range(5)]
        # 8 GPUs, 2 per pod: four long videos run, the fifth's Job waits for Kueue.
        m.until({key("t2v_videos_running", queue="long", tenant="default"): 4,
                 key("t2v_videos_waiting", queue="long", tenant="default", stage="admission"): 1,
                 key("t2v_videos_waiting", queue="long", tenant="default", stage="dispatch"): 0,
                 key("t2v_submit_to_job_seconds_count", queue="long"): 5,
                 key("t2v_submit_to_admission_seconds_count", queue="long"): 4,
                 key("t2v_submit_to_running_seconds_count", queue="long"): 4,
                 key("t2v_video_starts_total", queue="long"): 4,
                 key("t2v_job_pods", state="running"): 4,
                 key("t2v_watcher_lag_seconds_count", event="admitted"): 4,
                 key("t2v_controller_leader"): 1})
        assert 0 < m.total("t2v_submit_to_admission_seconds_sum", queue="long") < 4 * 120
        assert m.total("t2v_controller_last_full_pass_timestamp_seconds") > 0

        # Short work takes back short's GPUs: Kueue preempts two long videos (their Jobs suspended).
        short_ids = [s.submit(prompt=f"a match being struck, take {i}", **SHORT) for i in range(2)]
        m.until({key("t2v_preemptions_total", queue="long", reason="InCohortReclamation"): 2,
                 key("t2v_preemptions_total"): 2,
                 key("t2v_videos_waiting", queue="long", tenant="default", stage="admission"): 3,
                 key("t2v_videos_running", queue="short", tenant="default"): 2,
                 key("t2v_video_starts_total", queue="short"): 2,
                 key("t2v_submit_to_admission_seconds_count", queue="short"): 2,
                 key("t2v_watcher_lag_seconds_count", event="suspended"): 2})

        s.pods.release()
        s.wait_terminal(short_ids + long_ids, timeout=180)
        # All done: the preempted two resumed from their checkpoints (step 1); a first admission
        # and a first running pod are counted once per video, re-admissions only as starts.
        m.until({key("t2v_videos_finished_total", queue="long", model="mochi-1-preview", status="completed"): 5,
                 key("t2v_videos_finished_total", queue="short", model="tiny", status="completed"): 2,
                 key("t2v_checkpoint_resumes_total", model="mochi-1-preview"): 2,
                 key("t2v_checkpoint_resumed_steps_total", model="mochi-1-preview"): 2,
                 key("t2v_submit_to_admission_seconds_count", queue="long"): 5,
                 key("t2v_submit_to_running_seconds_count", queue="long"): 5,
                 key("t2v_video_starts_total", queue="long"): 7,
                 key("t2v_videos_waiting"): 0, key("t2v_videos_running"): 0,
                 key("t2v_video_failures_total"): 0, key("t2v_video_requeues_total"): 0,
                 key("t2v_job_pods", state="running"): 0})
        # GPU time is counted for the runs that did all their steps (the resumed two did part of theirs).
        gpu = "kwok stand-in (no GPU)"
        assert m.total("t2v_run_gpu_seconds_total", model="mochi-1-preview", gpu=gpu) > 0
        long_video = s.video(long_ids[0])
        per_video = work_units(num_frames=long_video["num_frames"], width=int(long_video["size"].split("x")[0]),
                               height=int(long_video["size"].split("x")[1]), steps=long_video["num_inference_steps"],
                               guidance=long_video["guidance_scale"])
        assert m.total("t2v_run_work_units_total", model="mochi-1-preview", gpu=gpu) == pytest.approx(3 * per_video)
        # Each admission the controller saw while its pod ran is dated by the Job's startTime (one that
        # ran and ended between two passes is not): 7 starts of long videos and 2 of short ones.
        assert 7 <= m.total("t2v_watcher_lag_seconds_count", event="admitted") <= m.total("t2v_video_starts_total") == 9
        assert m.total("t2v_watcher_lag_seconds_sum", event="suspended") < 2 * 30


def test_job_pods_waiting_for_the_model_cache_are_counted_until_the_node_is_ready(
        stack_factory, scraper_for, kueue_applied: ClusterHandle) -> None:
    # As the h100 overlay runs: Job pods only go to nodes the model-cache DaemonSet has labelled.
    with stack_factory({"model_ready_node_label": READY_LABEL}, run_seconds=2.0) as s:
        m = scraper_for(s)
        vid = s.submit(prompt="a kettle boiling", **SHORT)
        # Kueue admits the Job (the quota is there); the scheduler finds no node with the label.
        m.until({key("t2v_job_pods", state="waiting_model_cache"): 1, key("t2v_job_pods", state="running"): 0,
                 key("t2v_submit_to_admission_seconds_count", queue="short"): 1,
                 key("t2v_submit_to_running_seconds_count", queue="short"): 0})
        kueue_applied.kubectl("label", "node", NODE, f"{READY_LABEL}=true", "--overwrite")
        try:
            assert s.wait_terminal([vid])[0]["status"] == "completed"
            m.until({key("t2v_job_pods", state="waiting_model_cache"): 0,
                     key("t2v_submit_to_running_seconds_count", queue="short"): 1})
        finally:
            kueue_applied.kubectl("label", "node", NODE, f"{READY_LABEL}-", check=False)
