"""/v1/batches from CSV and JSON: all-or-nothing validation, counts, cancel."""

from __future__ import annotations

from fastapi.testclient import TestClient


def upload(client: TestClient, text: str, name: str = "prompts.csv"):
    return client.post("/v1/batches", files={"file": (name, text.encode(), "text/csv")})


def test_csv_batch_is_queued_with_counts(client: TestClient) -> None:
    r = upload(client, "prompt,seed,num_frames\na cat,1,7\n\"a dog, running\",2,13\nthird,,\n")
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["object"] == "batch" and b["status"] == "queued" and b["name"] == "prompts.csv"
    assert b["counts"] == {"total": 3, "queued": 3, "in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0}
    videos = client.get("/v1/videos", params={"batch_id": b["id"], "order": "asc"}).json()["data"]
    assert [v["prompt"] for v in videos] == ["a cat", "a dog, running", "third"]
    assert [v["seed"] for v in videos[:2]] == [1, 2] and videos[1]["num_frames"] == 13
    assert all(v["batch_id"] == b["id"] and v["priority"] == "batch" for v in videos)
    assert client.get(f"/v1/batches/{b['id']}").json()["counts"]["total"] == 3
    assert client.get("/v1/batches").json()["data"][0]["id"] == b["id"]


def test_bad_rows_reject_the_whole_upload_listing_each(client: TestClient) -> None:
    r = upload(client, "prompt,num_frames,size\nok,7,\n,7,\nfine,8,\nalso fine,,99x99\n")
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "invalid_csv" and err["param"] == "file"
    assert [(row["row"], row["param"]) for row in err["rows"]] == [(2, "prompt"), (3, "num_frames"), (4, "size")]
    assert "3 of 4 rows" in err["message"]
    assert client.get("/v1/videos").json()["data"] == [] and client.get("/v1/batches").json()["data"] == []


def test_csv_header_problems(client: TestClient) -> None:
    for text, fragment in [("", "empty"), ("seed\n1\n", "no 'prompt'"), ("prompt,colour\na,red\n", "'colour'"),
                           ("prompt\n", "no rows")]:
        r = upload(client, text)
        assert r.status_code == 400 and fragment in r.json()["error"]["message"], (text, r.text)
    r = client.post("/v1/batches", files={"file": ("x.csv", b"\xff\xfe\x00bad", "text/csv")})
    assert r.status_code == 400 and "UTF-8" in r.json()["error"]["message"]


def test_formula_looking_prompts_are_kept_as_text(client: TestClient) -> None:
    r = upload(client, "prompt\n=HYPERLINK(\"http://x\")\n")
    assert r.status_code == 200
    v = client.get("/v1/videos", params={"batch_id": r.json()["id"]}).json()["data"][0]
    assert v["prompt"] == '=HYPERLINK("http://x")'


def test_json_batch_and_cancel(client: TestClient) -> None:
    r = client.post("/v1/batches", json={"name": "n", "videos": [{"prompt": "a"}, {"prompt": "b", "seed": 4}]})
    assert r.status_code == 200, r.text
    b = r.json()
    c = client.post(f"/v1/batches/{b['id']}/cancel").json()
    assert c["status"] == "cancelled" and c["counts"]["cancelled"] == 2 and c["cancelled_at"]
    r = client.post("/v1/batches", json={"videos": [{"prompt": "a"}, {"prompt": ""}]})
    assert r.status_code == 400 and r.json()["error"]["rows"][0]["row"] == 2


def test_batch_404_and_body_limit(client: TestClient) -> None:
    assert client.get("/v1/batches/batch_nope").status_code == 404
    big = "prompt\n" + ("x" * 100 + "\n") * 120_000
    r = upload(client, big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
