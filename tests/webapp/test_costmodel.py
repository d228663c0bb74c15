"""The cost model behind `estimated_gpu_seconds` and short/long routing, calibrated by finished runs."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from core import costmodel
from core.db import engine_for, session_for
from core.settings import Settings

TINY = {"prompt": "a paper boat", "model": "tiny", "size": "432x240", "num_frames": 25, "num_inference_steps": 8,
        "guidance_scale": 4.5}


@pytest.fixture(autouse=True)
def no_cache(monkeypatch) -> None:
    monkeypatch.setattr(costmodel, "CACHE_SECONDS", 0.0)


def units(body: dict) -> int:
    w, h = (int(x) for x in body["size"].split("x"))
    return costmodel.work_units(num_frames=body["num_frames"], width=w, height=h,
                                steps=body["num_inference_steps"], guidance=body["guidance_scale"])


def finish(settings: Settings, video_id: str, *, denoise: float, resumed_at_step: int = 0) -> None:
    """Mark a video completed with the timings a job reports (the GPU cannot run here)."""
    timings = '{"text_encode": 0.5, "denoise": %s, "decode": 0.5, "encode": 3.0, "upload": 9.0%s}' % (
        denoise, f', "resumed_at_step": {resumed_at_step}' if resumed_at_step else "")
    with engine_for(settings.db_url).begin() as c:
        c.execute(sa.text("UPDATE video SET status = 'completed', timings = :t WHERE id = :id"),
                  {"t": timings, "id": video_id})


def test_estimates_follow_the_models_finished_runs(client: TestClient, settings: Settings) -> None:
    first = client.post("/v1/videos", json=TINY).json()
    assert first["estimated_gpu_seconds"] == pytest.approx(units(first) * costmodel.DEFAULT_SECONDS_PER_UNIT, rel=1e-3)

    for denoise in (9.0, 19.0, 1000.0):  # the median ignores one outlier; encode/upload are not GPU time
        finish(settings, client.post("/v1/videos", json=TINY).json()["id"], denoise=denoise)
    again = client.get(f"/v1/videos/{first['id']}").json()
    assert again["estimated_gpu_seconds"] == pytest.approx(20.0, rel=1e-3)  # 0.5 + 19 + 0.5, same size
    other = client.post("/v1/videos", json={**TINY, "num_inference_steps": 16}).json()
    assert other["estimated_gpu_seconds"] == pytest.approx(40.0, rel=1e-3)  # twice the steps
    with session_for(settings.db_url) as s:  # other models keep their own unit, not tiny's
        assert set(costmodel.calibrate(s)) == {"tiny"}


def test_runs_resumed_from_a_checkpoint_do_not_calibrate(client: TestClient, settings: Settings) -> None:
    # A resumed run's denoise time covers only the steps after its checkpoint: 6 of 8 steps here.
    for _ in range(3):
        finish(settings, client.post("/v1/videos", json=TINY).json()["id"], denoise=5.0, resumed_at_step=6)
    with session_for(settings.db_url) as s:
        assert costmodel.calibrate(s) == {}
    finish(settings, client.post("/v1/videos", json=TINY).json()["id"], denoise=19.0)
    assert client.post("/v1/videos", json=TINY).json()["estimated_gpu_seconds"] == pytest.approx(20.0, rel=1e-3)


def test_a_model_that_proves_slow_is_routed_to_the_long_queue(client: TestClient, settings: Settings) -> None:
    assert client.post("/v1/videos", json=TINY).json()["queue"] == "short"
    slow = settings.long_queue_threshold_seconds * 2
    for _ in range(3):
        finish(settings, client.post("/v1/videos", json=TINY).json()["id"], denoise=slow)
    assert client.post("/v1/videos", json=TINY).json()["queue"] == "long"
    csv = "prompt,model,size,num_frames,num_inference_steps\np,tiny,432x240,25,8\n"
    batch = client.post("/v1/batches", files={"file": ("b.csv", csv.encode(), "text/csv")}).json()
    [video] = client.get("/v1/videos", params={"batch_id": batch["id"]}).json()["data"]
    assert video["queue"] == "long"
