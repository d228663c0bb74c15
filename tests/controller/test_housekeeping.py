"""Webhooks (signed, retried with a stable id, visible in the API) and the retention janitor."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import httpx
from fastapi.testclient import TestClient

from controller.housekeeping import Housekeeper
from tests.support.receiver import webhook_receiver
from core.db import session_for
from core.models import Tenant
from core.settings import Settings


def verify(secret: str, headers: dict, body: bytes) -> bool:
    """Standard Webhooks verification, written from the spec (not with our own signer)."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.{body.decode()}".encode()
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(sig == f"v1,{expected}" for sig in headers["webhook-signature"].split())


def test_terminal_status_is_delivered_signed_and_retried(client: TestClient, settings: Settings) -> None:
    keeper = Housekeeper(settings, client.app.state.store, http=httpx.Client(timeout=5))
    with webhook_receiver(answers=[500]) as rec:
        vid = client.post("/v1/videos", json={"prompt": "p", "webhook_url": rec.url}).json()["id"]
        assert keeper.deliver_due() == 0  # nothing terminal yet
        client.post(f"/v1/videos/{vid}/cancel")
        assert keeper.deliver_due() == 1
        [first] = client.get(f"/v1/videos/{vid}/webhooks").json()["data"]
        assert (first["state"], first["attempts"], first["last_status"]) == ("pending", 1, 500)
        assert keeper.deliver_due() == 0  # backing off
        keeper.deliver_due(now=time.time() + 3600)
        [done] = client.get(f"/v1/videos/{vid}/webhooks").json()["data"]
        assert (done["state"], done["attempts"]) == ("delivered", 2)
    assert len(rec.requests) == 2
    ids = {r["headers"]["webhook-id"] for r in rec.requests}
    assert len(ids) == 1, "webhook-id must be stable across retries"
    with session_for(settings.db_url) as s:
        secret = s.get(Tenant, "default").webhook_secret
    for r in rec.requests:
        assert verify(secret, r["headers"], r["body"])
        payload = json.loads(r["body"])
        assert payload["type"] == "video.cancelled" and payload["data"]["id"] == vid


def test_unreachable_receiver_fails_after_max_attempts(client: TestClient, settings: Settings) -> None:
    from scripts.harness.net import free_port

    s = settings.model_copy(update={"webhook_max_attempts": 2})
    keeper = Housekeeper(s, client.app.state.store, http=httpx.Client(timeout=2))
    vid = client.post("/v1/videos", json={"prompt": "p", "webhook_url": f"http://127.0.0.1:{free_port()}/x"}).json()["id"]
    client.post(f"/v1/videos/{vid}/cancel")
    keeper.deliver_due()
    keeper.deliver_due(now=time.time() + 3600)
    [d] = client.get(f"/v1/videos/{vid}/webhooks").json()["data"]
    assert d["state"] == "failed" and d["attempts"] == 2 and "ConnectError" in d["last_error"]


def test_batch_webhook_once_when_its_last_video_ends(client: TestClient, settings: Settings) -> None:
    keeper = Housekeeper(settings, client.app.state.store)
    with webhook_receiver() as rec:
        b = client.post("/v1/batches", json={"videos": [{"prompt": "a"}, {"prompt": "b"}],
                                             "webhook_url": rec.url}).json()
        ids = [v["id"] for v in client.get("/v1/videos", params={"batch_id": b["id"]}).json()["data"]]
        client.post(f"/v1/videos/{ids[0]}/cancel")
        keeper.deliver_due()
        assert rec.requests == []
        client.post(f"/v1/videos/{ids[1]}/cancel")
        keeper.deliver_due()
        assert len(rec.requests) == 1
        payload = json.loads(rec.requests[0]["body"])
        # Every video ended (here: each cancelled on its own, not a batch cancel), so the batch completed.
        assert payload["type"] == "batch.completed" and payload["data"]["counts"]["cancelled"] == 2
        assert client.get(f"/v1/batches/{b['id']}/webhooks").json()["data"][0]["state"] == "delivered"


def test_bad_webhook_urls_are_named(client: TestClient) -> None:
    for url in ("ftp://x/y", "not a url", "http://"):
        r = client.post("/v1/videos", json={"prompt": "p", "webhook_url": url})
        assert r.status_code == 400 and r.json()["error"]["param"] == "webhook_url", url


def test_two_housekeepers_never_send_the_same_attempt(client: TestClient, settings: Settings) -> None:
    a = Housekeeper(settings, client.app.state.store)
    b = Housekeeper(settings, client.app.state.store)
    with webhook_receiver() as rec:
        for i in range(6):
            vid = client.post("/v1/videos", json={"prompt": f"p{i}", "webhook_url": rec.url}).json()["id"]
            client.post(f"/v1/videos/{vid}/cancel")
        import threading

        threads = [threading.Thread(target=k.deliver_due) for k in (a, b, a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(rec.requests) == 6
    assert len({r["headers"]["webhook-id"] for r in rec.requests}) == 6


def test_janitor_marks_expired_videos(client: TestClient, settings: Settings) -> None:
    keeper = Housekeeper(settings, client.app.state.store)
    vid = client.post("/v1/videos", json={"prompt": "p"}).json()["id"]
    client.post(f"/v1/videos/{vid}/cancel")
    client.app.state.store.put_bytes(f"videos/{vid}/progress.json", b"{}")  # a leftover file
    assert keeper.expire() == 0
    later = time.time() + settings.retention_days * 86400 + 60
    assert keeper.expire(now=later) == 1
    assert keeper.expire(now=later) == 0
    assert client.app.state.store.list(f"videos/{vid}") == []
