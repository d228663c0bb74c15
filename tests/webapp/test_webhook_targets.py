"""Webhook URLs a tenant may give: refused at submission and again at send time when they reach an
internal address (cluster mode), allowed on the embedded default, and never followed by redirect.

Name resolution is injected where a test needs a name to resolve to a chosen address, or to change
its answer between submission and sending (DNS rebinding): a real resolver for such names would
send queries off this machine, which the tests must not do. Addresses given as literals and
`localhost` go through the real code path unchanged.
"""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from controller.housekeeping import Housekeeper
from tests.support.receiver import webhook_receiver
from webapp.app import create_app
from core.settings import Backend, Settings
from core.webhook_targets import Policy, blocked

INTERNAL = ["http://127.0.0.1:9/h", "http://localhost:8080/h", "http://10.0.0.7/h", "http://172.16.3.4/h",
            "http://192.168.1.1/h", "http://169.254.169.254/latest/meta-data", "http://[::1]/h", "http://[fd00::1]/h",
            "http://[::ffff:10.0.0.1]/h", "http://100.64.0.1/h", "http://0.0.0.0/h"]


@pytest.fixture
def cluster_like(settings: Settings) -> Settings:
    """Keys optional, but the webhook policy of cluster mode (private targets refused)."""
    return settings.model_copy(update={"webhook_private_targets": False})


@pytest.mark.parametrize("url", INTERNAL)
def test_internal_targets_are_refused_at_submission(cluster_like: Settings, url: str) -> None:
    with TestClient(create_app(cluster_like)) as c:
        for path, body in (("/v1/videos", {"prompt": "p", "webhook_url": url}),
                           ("/v1/batches", {"videos": [{"prompt": "p"}], "webhook_url": url})):
            r = c.post(path, json=body)
            err = r.json()["error"]
            assert r.status_code == 400 and err["param"] == "webhook_url", (path, url, r.text)
            assert "internal" in err["message"] or "resolve" in err["message"]
        assert c.get("/v1/videos").json()["data"] == []  # nothing half-written


def test_a_public_literal_address_is_accepted(cluster_like: Settings) -> None:
    with TestClient(create_app(cluster_like)) as c:
        r = c.post("/v1/videos", json={"prompt": "p", "webhook_url": "https://93.184.216.34/hooks"})
        assert r.status_code == 200, r.text


def test_the_embedded_default_allows_private_targets(settings: Settings) -> None:
    assert settings.backend == Backend.local and settings.webhooks_may_reach_private
    assert not settings.model_copy(update={"backend": Backend.kubernetes}).webhooks_may_reach_private
    with TestClient(create_app(settings)) as c:
        assert c.post("/v1/videos", json={"prompt": "p", "webhook_url": "http://127.0.0.1:9/h"}).status_code == 200


@pytest.mark.parametrize("address", ["8.8.8.8", "2001:4860:4860::8888", "93.184.216.34"])
def test_public_addresses_are_not_blocked(address: str) -> None:
    assert not blocked(address)


def test_a_name_that_rebinds_to_loopback_after_submission_is_not_sent(cluster_like: Settings) -> None:
    """Submission saw a public address; at send time the same name says 127.0.0.1: nothing is sent."""
    answers = {"hooks.example.test": ["93.184.216.34"]}
    policy = Policy(allow_private=False, resolve=lambda host, port: answers[host])
    with webhook_receiver() as rec, TestClient(create_app(cluster_like)) as c:
        c.app.state.webhook_policy = policy
        port = rec.url.rsplit(":", 1)[1].split("/")[0]
        vid = c.post("/v1/videos", json={"prompt": "p", "webhook_url": f"http://hooks.example.test:{port}/hook"}
                     ).json()["id"]
        c.post(f"/v1/videos/{vid}/cancel")
        answers["hooks.example.test"] = ["127.0.0.1"]
        Housekeeper(cluster_like, c.app.state.store, http=httpx.Client(timeout=2), policy=policy).deliver_due()
        [d] = c.get(f"/v1/videos/{vid}/webhooks").json()["data"]
    assert rec.requests == []
    assert d["state"] == "pending" and d["attempts"] == 1 and "not sent" in d["last_error"] and "127.0.0.1" in d["last_error"]


def test_an_attempt_connects_to_the_address_that_was_checked(cluster_like: Settings) -> None:
    """The request goes to the resolved address with the URL's own Host header. (Loopback stands in for
    a public address here: the policy's is_blocked is told to pass it, since no public host is reachable.)"""
    policy = Policy(allow_private=False, resolve=lambda host, port: ["127.0.0.1"], is_blocked=lambda a: False)
    with webhook_receiver() as rec, TestClient(create_app(cluster_like)) as c:
        c.app.state.webhook_policy = policy
        port = rec.url.rsplit(":", 1)[1].split("/")[0]
        vid = c.post("/v1/videos", json={"prompt": "p", "webhook_url": f"http://hooks.example.test:{port}/hook"}
                     ).json()["id"]
        c.post(f"/v1/videos/{vid}/cancel")
        Housekeeper(cluster_like, c.app.state.store, http=httpx.Client(timeout=2), policy=policy).deliver_due()
    [req] = rec.requests
    assert req["path"] == "/hook" and req["headers"]["host"] == f"hooks.example.test:{port}"


def test_redirects_are_not_followed(settings: Settings) -> None:
    """A receiver answering 307 to an internal address gets one attempt, recorded as failed, no second hop."""
    with webhook_receiver(answers=[307]) as rec, TestClient(create_app(settings)) as c:
        vid = c.post("/v1/videos", json={"prompt": "p", "webhook_url": rec.url}).json()["id"]
        c.post(f"/v1/videos/{vid}/cancel")
        Housekeeper(settings, c.app.state.store).deliver_due()
        [d] = c.get(f"/v1/videos/{vid}/webhooks").json()["data"]
    assert len(rec.requests) == 1 and d["last_status"] == 307 and d["state"] == "pending"


@pytest.mark.parametrize("url", ["", None])
def test_an_empty_webhook_url_means_none(settings: Settings, url) -> None:
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/videos", json={"prompt": "p", "webhook_url": url})
        assert r.status_code == 200 and c.get(f"/v1/videos/{r.json()['id']}/webhooks").json()["data"] == []


@pytest.mark.parametrize("url", ["ftp://x/y", "not a url", "http://", "http://a b/", "http://x/%zz", "http://x:99999/",
                                 "javascript:alert(1)", "https://" + "a" * 2050 + ".com/"])
def test_malformed_webhook_urls_are_named(settings: Settings, url: str) -> None:
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/videos", json={"prompt": "p", "webhook_url": url})
        assert r.status_code == 400 and r.json()["error"]["param"] == "webhook_url", url
