"""Cursor pagination: complete, ordered, filtered, and correct while rows are inserted."""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient


def walk(client: TestClient, **params) -> list[str]:
    ids, after = [], None
    while True:
        page = client.get("/v1/videos", params={**params, **({"after": after} if after else {})}).json()
        ids += [v["id"] for v in page["data"]]
        if page["data"]:
            assert page["first_id"] == page["data"][0]["id"] and page["last_id"] == page["data"][-1]["id"]
        if not page["has_more"]:
            return ids
        after = page["last_id"]


def test_pages_cover_everything_once_in_both_orders(client: TestClient) -> None:
    made = [client.post("/v1/videos", json={"prompt": f"p{i}"}).json()["id"] for i in range(23)]
    assert walk(client, limit=5) == made[::-1]
    assert walk(client, limit=7, order="asc") == made


def test_limit_bounds_and_bad_cursor(client: TestClient) -> None:
    for bad in (0, 101):
        r = client.get("/v1/videos", params={"limit": bad})
        assert r.status_code == 400 and r.json()["error"]["param"] == "limit"
    r = client.get("/v1/videos", params={"after": "video_nope"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "after"
    r = client.get("/v1/videos", params={"status": "running"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "status"


def test_status_filter(client: TestClient) -> None:
    a = client.post("/v1/videos", json={"prompt": "a"}).json()["id"]
    b = client.post("/v1/videos", json={"prompt": "b"}).json()["id"]
    client.post(f"/v1/videos/{a}/cancel")
    assert walk(client, status="cancelled") == [a]
    assert walk(client, status="queued") == [b]


def test_walking_while_others_insert_sees_every_old_row_exactly_once(client: TestClient) -> None:
    old = [client.post("/v1/videos", json={"prompt": f"old{i}"}).json()["id"] for i in range(30)]
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set() and n < 200:
            client.post("/v1/videos", json={"prompt": f"new{n}"})
            n += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        seen = walk(client, limit=4, order="desc")
    finally:
        stop.set()
        t.join()
    assert len(seen) == len(set(seen)), "a row was returned twice"
    assert [i for i in seen if i in set(old)] == old[::-1], "an old row was skipped or reordered"
