"""`crf`, the x264 quality, end to end: request, row, public object, item, and the pod's encode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from core.items import item_for
from core.models import Video
from jobcontract.records import read_result
from jobcontract.storage import LocalStore
from jobimage.entrypoint import ItemRun, Published
from tests.jobimage.conftest import make_item


def test_crf_is_taken_checked_stored_and_shown(client: TestClient) -> None:
    made = client.post("/v1/videos", json={"prompt": "a fox", "crf": 30}).json()
    assert made["crf"] == 30
    assert client.post("/v1/videos", json={"prompt": "a fox"}).json()["crf"] == 18  # what the pod always used
    bad = client.post("/v1/videos", json={"prompt": "a fox", "crf": 52})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "crf" and "52" in bad.json()["error"]["message"]
    schema = client.get("/openapi.json").text
    assert '"crf"' in schema


def test_the_item_carries_crf_to_the_encoder(tmp_path: Path) -> None:
    video = Video(id="video_x", status="queued", created_at=0, updated_at=0, prompt="p", model="tiny", num_frames=7,
                  width=64, height=64, fps=30, seed=1, negative_prompt="", num_inference_steps=2, guidance_scale=1.0,
                  crf=40)
    assert item_for(video, 0).crf == 40

    store = LocalStore(tmp_path / "store")
    frames = np.random.default_rng(0).integers(0, 256, size=(7, 64, 96, 3), dtype=np.uint8)  # noise: crf shows
    sizes = {}
    for crf in (0, 51):
        item = make_item(video_id=f"crf{crf}", crf=crf)
        clip = type("Clip", (), {"frames": frames, "seed": 1})()
        assert Published(run=ItemRun(store, item), video=clip, timings={}, gpu="cpu").publish().status == "succeeded"
        sizes[crf] = read_result(store, item.video_id).bytes
    assert sizes[0] > 4 * sizes[51]
