"""`t2v controller` also does the housekeeping of cluster mode: webhooks are sent and expired videos'
files deleted by the controller processes (before, only the embedded `t2v serve` ran it, so cluster
mode sent no webhook at all). Real controller process, real PostgreSQL, the real control plane."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from core import queries
from core.db import session_for
from jobcontract.records import video_keys
from tests.cluster.builders import eventually
from tests.support.receiver import webhook_receiver
from webapp.app import create_app

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]


def test_the_controller_sends_webhooks_and_expires_files(cluster_mode) -> None:
    settings, replicas = cluster_mode
    replicas.env.update({"T2V_WEBHOOK_PRIVATE_TARGETS": "true",  # the receiver is on loopback
                         "T2V_JANITOR_INTERVAL_SECONDS": "1"})
    with webhook_receiver() as rec, TestClient(create_app(settings)) as api:
        vid = api.post("/v1/videos", json={"prompt": "p", "webhook_url": rec.url}).json()["id"]
        api.post(f"/v1/videos/{vid}/cancel")
        gone = api.post("/v1/videos", json={"prompt": "q"}).json()["id"]
        api.app.state.store.put_bytes(video_keys(gone)["video"], b"old bytes")
        api.post(f"/v1/videos/{gone}/cancel")
        with session_for(settings.db_url) as s:
            video = queries.get_video(s, video_id=gone, tenant=None)
            video.expires_at = time.time() - 1
            s.add(video)
            s.commit()
        replicas.start()
        eventually(lambda: len(rec.requests) == 1, timeout=60, what="the webhook")
        payload = json.loads(rec.requests[0]["body"])
        assert payload["type"] == "video.cancelled" and payload["data"]["id"] == vid
        eventually(lambda: not api.app.state.store.exists(video_keys(gone)["video"]), timeout=60,
                   what="the expired video's file deleted")
