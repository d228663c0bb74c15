"""GET /v1/batches/{id}/content: a streamed zip of the finished videos, with an index."""

from __future__ import annotations

import csv
import io
import zipfile

from fastapi.testclient import TestClient

from jobcontract.records import video_keys
from core import crud, queries
from core.db import session_for
from core.status import VideoStatus


def finish(client: TestClient, video_id: str, data: bytes) -> None:
    """Mark a video completed with `data` as its MP4, as a runner would."""
    client.app.state.store.put_bytes(video_keys(video_id)["video"], data)
    with session_for(client.app.state.settings.db_url) as s:
        video = queries.get_video(s, video_id=video_id, tenant=None)
        crud.transition(s, video=video, to=VideoStatus.in_progress, reason="test")
        crud.transition(s, video=video, to=VideoStatus.completed, reason="test")
        s.commit()


def test_zip_holds_completed_videos_and_an_index(client: TestClient) -> None:
    b = client.post("/v1/batches", json={"videos": [{"prompt": "one", "seed": 1}, {"prompt": "two, with comma"},
                                                    {"prompt": "three"}]}).json()
    r = client.get(f"/v1/batches/{b['id']}/content")
    assert r.status_code == 409 and r.json()["error"]["code"] == "content_not_ready"
    ids = [v["id"] for v in client.get("/v1/videos", params={"batch_id": b["id"], "order": "asc"}).json()["data"]]
    big = bytes(range(256)) * 4096  # 1 MiB: several storage chunks
    finish(client, ids[0], big)
    finish(client, ids[1], b"second")
    r = client.get(f"/v1/batches/{b['id']}/content")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert f'filename="{b["id"]}.zip"' in r.headers["content-disposition"]
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    assert zf.testzip() is None
    assert zf.namelist() == ["index.csv", f"0001_{ids[0]}.mp4", f"0002_{ids[1]}.mp4"]
    assert zf.read(f"0001_{ids[0]}.mp4") == big and zf.read(f"0002_{ids[1]}.mp4") == b"second"
    index = list(csv.DictReader(io.StringIO(zf.read("index.csv").decode())))
    assert [(row["row"], row["video_id"], row["prompt"]) for row in index] == [
        ("1", ids[0], "one"), ("2", ids[1], "two, with comma")]
    assert index[0]["seed"] == "1"
    assert client.get("/v1/batches/batch_nope/content").status_code == 404
