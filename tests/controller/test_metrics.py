"""The operator metrics of embedded mode: a real `t2v serve` (local runner, tiny model on the CPU)
runs a good and a bad video, and its /metrics says so under the names the cluster controller uses."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.support.metrics import scrape, total
from core import costmodel

pytestmark = pytest.mark.slow


def wait_terminal(url: str, ids: list[str], timeout: float = 240) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        videos = [httpx.get(f"{url}/v1/videos/{i}", timeout=30).json() for i in ids]
        if all(v["status"] in ("completed", "failed") for v in videos):
            return videos
        assert time.monotonic() < deadline, videos
        time.sleep(0.3)


def test_embedded_metrics_count_waits_finishes_failures_and_gpu_time(server_factory) -> None:
    # The bad video must reach the job process: the API's own token count is turned off here.
    server = server_factory(env={"T2V_CHECK_PROMPT_TOKENS": "false"})
    before = scrape(server.url + "/metrics")
    assert total(before, "t2v_video_starts_total") == 0
    assert total(before, "t2v_videos_waiting") == 0
    body = {"size": "256x144", "num_frames": 7, "num_inference_steps": 2}
    good = httpx.post(f"{server.url}/v1/videos", json={"prompt": "a lighthouse at dusk", **body}, timeout=30).json()
    # Over Mochi's 256 T5 tokens: fails in the job process.
    bad = httpx.post(f"{server.url}/v1/videos", json={"prompt": " ".join(["fox"] * 450), **body}, timeout=30).json()
    done, failed = wait_terminal(server.url, [good["id"], bad["id"]])
    assert (done["status"], failed["status"]) == ("completed", "failed"), (done, failed)

    after = scrape(server.url + "/metrics")
    queue = done["queue"]
    assert queue == failed["queue"] == "short"
    # Each video waited, got its job process and ran once; nothing waits now.
    for name in ("t2v_submit_to_job_seconds_count", "t2v_submit_to_admission_seconds_count",
                 "t2v_submit_to_running_seconds_count", "t2v_video_starts_total"):
        assert total(after, name, queue=queue) == 2, name
    assert 0 < total(after, "t2v_submit_to_running_seconds_sum", queue=queue) < 240
    assert total(after, "t2v_videos_waiting") == 0 and total(after, "t2v_videos_running") == 0
    # One finished of each kind, the failure under its error code.
    assert total(after, "t2v_videos_finished_total", queue=queue, model="tiny", status="completed") == 1
    assert total(after, "t2v_videos_finished_total", queue=queue, model="tiny", status="failed") == 1
    assert total(after, "t2v_video_failures_total", queue=queue, reason=failed["error"]["code"]) == 1
    assert total(after, "t2v_video_failures_total") == 1
    # GPU (here CPU) seconds of the completed run, and its work units as the cost model counts them.
    spent = sum(done["timings"].get(k, 0.0) for k in costmodel.GPU_STAGES)
    assert total(after, "t2v_run_gpu_seconds_total", model="tiny") == pytest.approx(spent, rel=1e-6)
    units = costmodel.work_units(num_frames=7, width=256, height=144, steps=2, guidance=done["guidance_scale"])
    assert total(after, "t2v_run_work_units_total", model="tiny") == pytest.approx(units)
    assert total(after, "t2v_checkpoint_resumes_total") == 0 and total(after, "t2v_video_requeues_total") == 0
    # The webapp's own series are still there beside the runner's.
    assert total(after, "t2v_http_requests_total", route="/v1/videos", method="POST") == 2
