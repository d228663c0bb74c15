"""Settling a video whose job ended: what the DB and object storage say afterwards."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import select

from controller.results import settle
from jobcontract.records import video_keys
from core import crud
from core.db import session_for
from core.models import Video
from core.settings import Settings
from core.status import VideoStatus


def test_a_video_that_gives_up_leaves_no_files_behind(api: TestClient, run_settings: Settings) -> None:
    """An MP4 uploaded before the result write failed must not outlive the `failed` row."""
    store = api.app.state.store
    vid = api.post("/v1/videos", json={"prompt": "p", "model": "tiny"}).json()["id"]
    with session_for(run_settings.db_url) as s:
        video = s.exec(select(Video).where(Video.id == vid)).one()
        assert crud.claim_unit(s, videos=[video], job_name="job-1", now=0) == [video]
        crud.transition(s, video=video, to=VideoStatus.in_progress, reason="running")
        s.commit()
        keys = video_keys(vid)
        store.put_bytes(keys["video"], b"\x00\x00\x00\x18ftypmp42")  # the upload got through, the result did not
        store.put_bytes(keys["progress"], b'{"percent": 100}')
        store.put_bytes(keys["checkpoint"], b"latents of a stopped run")  # no use for a video that failed
        outcome = settle(s, store=store, video=video, exit_reason="exit 75", retry_allowed=True, max_attempts=1)
        s.commit()
    assert outcome == "failed"
    body = api.get(f"/v1/videos/{vid}").json()
    assert body["status"] == "failed" and "exit 75" in body["error"]["message"]
    assert not any(store.exists(k) for k in keys.values())
    assert api.get(f"/v1/videos/{vid}/content").json()["error"]["code"] == "content_not_ready"  # 409: it failed
