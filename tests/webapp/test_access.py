"""API keys, tenant isolation and per-tenant limits (state in the DB, shared by replicas)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from webapp.app import create_app
from webapp.auth import create_key, ensure_tenant
from core.db import migrate, session_for
from core.settings import Settings


@pytest.fixture
def secured(settings: Settings) -> Settings:
    return settings.model_copy(update={"auth_required": True})


def key(settings: Settings, tenant: str, *, admin: bool = False, **limits) -> str:
    migrate(settings.db_url)
    with session_for(settings.db_url) as s:
        if limits:
            ensure_tenant(s, name=tenant, **limits)
            s.commit()
        return create_key(s, tenant=tenant, admin=admin)[1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_keys_are_required_when_enabled(secured: Settings) -> None:
    with TestClient(create_app(secured)) as c:
        r = c.get("/v1/videos")
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        assert r.headers["www-authenticate"] == "Bearer"
        assert c.get("/v1/videos", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert c.get("/v1/videos", headers={"Authorization": "Basic abc"}).status_code == 401
        token = key(secured, "team-a")
        assert c.get("/v1/videos", headers=bearer(token)).status_code == 200
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        assert c.get("/v1/videos", headers=bearer(forged)).status_code == 401
        assert c.get("/healthz").status_code == 200  # probes stay open


def test_tenants_see_only_their_own_and_admins_see_all(secured: Settings) -> None:
    a, b, admin = key(secured, "team-a"), key(secured, "team-b"), key(secured, "ops", admin=True)
    with TestClient(create_app(secured)) as c:
        va = c.post("/v1/videos", json={"prompt": "a"}, headers=bearer(a)).json()["id"]
        vb = c.post("/v1/videos", json={"prompt": "b"}, headers=bearer(b)).json()["id"]
        batch = c.post("/v1/batches", json={"videos": [{"prompt": "x"}]}, headers=bearer(a)).json()["id"]
        for path in (f"/v1/videos/{va}", f"/v1/videos/{va}/events", f"/v1/batches/{batch}"):
            assert c.get(path, headers=bearer(b)).status_code == 404, path
        assert c.post(f"/v1/videos/{va}/cancel", headers=bearer(b)).status_code == 404
        assert c.delete(f"/v1/videos/{va}", headers=bearer(b)).status_code == 404
        assert c.post(f"/v1/batches/{batch}/cancel", headers=bearer(b)).status_code == 404
        ids_b = {v["id"] for v in c.get("/v1/videos", headers=bearer(b)).json()["data"]}
        assert ids_b == {vb}
        assert c.get("/v1/batches", headers=bearer(b)).json()["data"] == []
        ids_admin = {v["id"] for v in c.get("/v1/videos", headers=bearer(admin)).json()["data"]}
        assert {va, vb} <= ids_admin


def test_revoked_key_is_refused_at_once(secured: Settings) -> None:
    from webapp.auth import revoke_key

    token = key(secured, "team-a")
    with TestClient(create_app(secured)) as c:
        assert c.get("/v1/videos", headers=bearer(token)).status_code == 200
        with session_for(secured.db_url) as s:
            revoke_key(s, key_id=token.split("_")[1])
        assert c.get("/v1/videos", headers=bearer(token)).status_code == 401


def test_optional_keys_on_the_embedded_default(client: TestClient, settings: Settings) -> None:
    assert client.get("/v1/videos").status_code == 200  # no key: the default tenant
    token = key(settings, "team-a")
    client.post("/v1/videos", json={"prompt": "mine"}, headers=bearer(token))
    assert len(client.get("/v1/videos", headers=bearer(token)).json()["data"]) == 1


def test_rate_limit_is_shared_by_two_replicas(settings: Settings) -> None:
    token = key(settings, "team-a", submissions_per_minute=3, max_waiting=100)
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        codes = [(one if i % 2 else two).post("/v1/videos", json={"prompt": f"p{i}"}, headers=bearer(token))
                 for i in range(5)]
        assert [r.status_code for r in codes] == [200, 200, 200, 429, 429]
        err = codes[3].json()["error"]
        assert err["type"] == "rate_limit_error" and err["param"] == "submissions_per_minute" and "3" in err["message"]
        assert 1 <= int(codes[3].headers["retry-after"]) <= 60
        assert one.post("/v1/videos", json={"prompt": "default tenant is unlimited"}).status_code == 200


def test_waiting_limit_counts_batches_too(settings: Settings) -> None:
    token = key(settings, "team-a", submissions_per_minute=100, max_waiting=4)
    with TestClient(create_app(settings)) as c:
        ok = c.post("/v1/batches", json={"videos": [{"prompt": "x"}] * 3}, headers=bearer(token))
        assert ok.status_code == 200
        over = c.post("/v1/batches", json={"videos": [{"prompt": "y"}] * 2}, headers=bearer(token))
        assert over.status_code == 429 and over.json()["error"]["param"] == "max_waiting"
        assert "5" in over.json()["error"]["message"] and "4" in over.json()["error"]["message"]
        assert c.post("/v1/videos", json={"prompt": "z"}, headers=bearer(token)).status_code == 200
        assert c.post("/v1/videos", json={"prompt": "z"}, headers=bearer(token)).status_code == 429
