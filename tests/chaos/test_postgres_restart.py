"""PostgreSQL restarted under load: answers during the outage are 503 with Retry-After (never a
bare 500 or a hang), the server recovers by itself, and every accepted video is in the DB."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from scripts.harness.postgres import PostgresServer


@pytest.mark.slow
@pytest.mark.postgres
def test_restart_under_load(postgres_server: PostgresServer, server_factory, tmp_path: Path) -> None:
    db = postgres_server.create_db("t2v_pg_restart")
    server = server_factory(env={"T2V_DATABASE_URL": db, "T2V_BACKEND": "kubernetes", "T2V_AUTH_REQUIRED": "false"})
    accepted, codes, stop = [], [], threading.Event()

    def client(n: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    r = http.post("/v1/videos", json={"prompt": f"pg {n}-{i}"})
                except httpx.HTTPError as e:
                    codes.append(type(e).__name__)
                    continue
                codes.append(r.status_code)
                if r.status_code == 200:
                    accepted.append(r.json()["id"])
                elif r.status_code == 503:
                    assert r.json()["error"]["code"] == "database_unavailable" and r.headers["retry-after"]
                    time.sleep(0.1)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    time.sleep(2)
    postgres_server.restart()
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join()
    assert set(codes) <= {200, 503}, sorted(set(map(str, codes)))
    after = httpx.post(f"{server.url}/v1/videos", json={"prompt": "after the restart"})
    assert after.status_code == 200
    engine = sa.create_engine(db)
    with engine.connect() as c:
        stored = {r[0] for r in c.execute(sa.text("SELECT id FROM video"))}
    engine.dispose()
    assert set(accepted) <= stored and len(accepted) > 10
