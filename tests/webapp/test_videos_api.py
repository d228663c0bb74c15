"""The /v1/videos API: creation, validation errors, idempotency, listing, cancel, delete."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from webapp.app import create_app


def create(client: TestClient, **body) -> dict:
    r = client.post("/v1/videos", json={"prompt": "a red fox in snow", **body})
    assert r.status_code == 200, r.text
    return r.json()


def assert_error(r, status: int, param: str | None, *fragments: str) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}
    assert err["param"] == param
    for f in fragments:
        assert f in err["message"], err["message"]
    return err


def test_create_returns_queued_video_object(client: TestClient) -> None:
    v = create(client, seed=7, num_frames=13, size="848x480", negative_prompt="blur", metadata={"k": "v"})
    assert v["object"] == "video" and v["id"].startswith("video_")
    assert v["status"] == "queued" and v["progress"] == 0
    assert (v["seed"], v["num_frames"], v["size"], v["seconds"]) == (7, 13, "848x480", "0.43")
    assert v["model"] == "tiny" and v["notice"] and v["metadata"] == {"k": "v"}
    assert v["queue_position"] == 1 and isinstance(v["created_at"], int) and v["expires_at"] > v["created_at"]
    assert v["error"] is None and v["completed_at"] is None


def test_seed_is_drawn_and_reported_when_not_given(client: TestClient) -> None:
    a, b = create(client), create(client)
    assert isinstance(a["seed"], int) and a["seed"] != b["seed"]
    assert client.get(f"/v1/videos/{a['id']}").json()["seed"] == a["seed"]


def test_form_fields_are_accepted(client: TestClient) -> None:
    r = client.post("/v1/videos", data={"prompt": "from a form", "seconds": "1", "seed": "3"})
    assert r.status_code == 200, r.text
    assert (r.json()["num_frames"], r.json()["seed"]) == (31, 3)


@pytest.mark.parametrize(("seconds", "frames"), [("4", 121), (2, 61), ("0.2", 7), (5.43, 163)])
def test_seconds_become_mochi_frame_counts(client: TestClient, seconds, frames: int) -> None:
    assert create(client, seconds=seconds)["num_frames"] == frames


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"prompt": ""}, "prompt", "''"),
        ({"prompt": "   "}, "prompt", "non-empty"),
        ({"prompt": "x" * 2001}, "prompt", "2001"),
        ({"prompt": 5}, "prompt", "5"),
        ({}, "prompt", "None"),
        ({"prompt": "p", "num_frames": 30}, "num_frames", "30"),
        ({"prompt": "p", "num_frames": 169}, "num_frames", "169"),
        ({"prompt": "p", "num_frames": "many"}, "num_frames", "'many'"),
        ({"prompt": "p", "seconds": "0"}, "seconds", "'0'"),
        ({"prompt": "p", "seconds": 60}, "seconds", "60"),
        ({"prompt": "p", "seconds": "1", "num_frames": 31}, "num_frames", "not both"),
        ({"prompt": "p", "size": "1920x1080"}, "size", "1920x1080"),
        ({"prompt": "p", "size": "850x480"}, "size", "850x480"),
        ({"prompt": "p", "size": "big"}, "size", "'big'"),
        ({"prompt": "p", "model": "sora-2"}, "model", "sora-2"),
        ({"prompt": "p", "num_inference_steps": 1}, "num_inference_steps", "got 1"),
        ({"prompt": "p", "num_inference_steps": 100000}, "num_inference_steps", "100000"),
        ({"prompt": "p", "guidance_scale": 500}, "guidance_scale", "500"),
        ({"prompt": "p", "guidance_scale": "nan"}, "guidance_scale", "nan"),
        ({"prompt": "p", "seed": -1}, "seed", "-1"),
        ({"prompt": "p", "seed": 1.5}, "seed", "1.5"),
        ({"prompt": "p", "metadata": {"k": 1}}, "metadata", "'k'"),
        ({"prompt": "p", "colour": "red"}, "colour", "colour"),
    ],
    ids=lambda v: str(v)[:40] if not isinstance(v, dict) else None,
)
def test_bad_fields_are_named_with_their_value(client: TestClient, body: dict, param: str, fragment: str) -> None:
    r = client.post("/v1/videos", json=body)
    err = assert_error(r, 400, param, fragment)
    assert err["type"] == "invalid_request_error"
    assert client.get("/v1/videos").json()["data"] == []  # nothing half-written


def test_malformed_bodies(client: TestClient) -> None:
    assert_error(client.post("/v1/videos", content=b"{not json", headers={"content-type": "application/json"}),
                 400, "body", "not valid JSON")
    assert_error(client.post("/v1/videos", json=["a"]), 400, "body", "JSON object")
    assert_error(client.post("/v1/videos", content=b"<x/>", headers={"content-type": "application/xml"}),
                 415, "Content-Type", "application/xml")
    big = b'{"prompt": "' + b"a" * (11 * 1024 * 1024) + b'"}'
    assert_error(client.post("/v1/videos", content=big, headers={"content-type": "application/json"}),
                 413, "body", "limit")


def test_idempotency_key_replays_and_conflicts(client: TestClient) -> None:
    h = {"Idempotency-Key": "req-1"}
    a = client.post("/v1/videos", json={"prompt": "same"}, headers=h)
    b = client.post("/v1/videos", json={"prompt": "same"}, headers=h)
    assert a.status_code == b.status_code == 200
    assert a.json()["id"] == b.json()["id"] and a.json()["seed"] == b.json()["seed"]
    assert b.headers["Idempotent-Replayed"] == "true"
    c = client.post("/v1/videos", json={"prompt": "different"}, headers=h)
    assert_error(c, 409, "Idempotency-Key", "req-1")
    assert len(client.get("/v1/videos").json()["data"]) == 1


def test_unknown_and_malformed_ids_are_404(client: TestClient) -> None:
    for path in ("/v1/videos/video_doesnotexist", "/v1/videos/..%2F..%2Fetc%2Fpasswd", "/v1/videos/x' OR 1=1"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.json()["error"]["type"] == "not_found_error"


def test_content_is_409_until_completed(client: TestClient) -> None:
    """The video exists (not 404) but its content does not yet: a conflict with its state."""
    v = create(client)
    err = assert_error(client.get(f"/v1/videos/{v['id']}/content"), 409, "video_id", "queued")
    assert err["code"] == "content_not_ready"


def test_cancel_then_cancel_again_and_conflict_when_finished(client: TestClient) -> None:
    v = create(client)
    r = client.post(f"/v1/videos/{v['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["completed_at"]
    assert client.post(f"/v1/videos/{v['id']}/cancel").json()["status"] == "cancelled"
    events = client.get(f"/v1/videos/{v['id']}/events").json()["data"]
    assert [(e["from"], e["to"]) for e in events] == [(None, "queued"), ("queued", "cancelled")]


def test_delete_removes_the_row(client: TestClient) -> None:
    v = create(client)
    r = client.delete(f"/v1/videos/{v['id']}")
    assert r.json() == {"id": v["id"], "object": "video.deleted", "deleted": True}
    assert client.get(f"/v1/videos/{v['id']}").status_code == 404


def test_queue_positions_follow_submission_order(client: TestClient) -> None:
    ids = [create(client)["id"] for _ in range(3)]
    assert [client.get(f"/v1/videos/{i}").json()["queue_position"] for i in ids] == [1, 2, 3]
    client.post(f"/v1/videos/{ids[0]}/cancel")
    assert client.get(f"/v1/videos/{ids[2]}").json()["queue_position"] == 2


def test_health_ready_metrics_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ok"
    create(client)
    metrics = client.get("/metrics").text
    assert 't2v_videos{status="queued"} 1.0' in metrics
    # Counted by route template and status, the request's own method.
    assert 't2v_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in metrics
    assert 't2v_http_requests_total{method="POST",route="/v1/videos",status="200"} 1.0' in metrics
    client.get("/v1/videos/video_doesnotexist")
    assert ('t2v_http_requests_total{method="GET",route="/v1/videos/{video_id}",status="404"} 1.0'
            in client.get("/metrics").text)
    spec = client.get("/openapi.json").json()
    for path in ("/v1/videos", "/v1/videos/{video_id}", "/v1/videos/{video_id}/content",
                 "/v1/videos/{video_id}/cancel", "/v1/batches", "/v1/batches/{batch_id}/cancel"):
        assert path in spec["paths"], path


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_request_that_fails_unexpectedly_is_counted_as_the_500_it_becomes(settings) -> None:  # noqa: ANN001
    app = create_app(settings)

    def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/v1/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        assert c.get("/v1/boom").status_code == 500
        assert 't2v_http_requests_total{method="GET",route="/v1/boom",status="500"} 1.0' in c.get("/metrics").text


def test_unknown_route_has_error_body(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing"), 404, None, "no route")


@pytest.mark.parametrize("prompt", ["🦊 in ❄️", "שועל בשלג", "e\u0301\u0301\u0301 combining", "\u202eevil\u202c",
                                    "中文提示" * 400])
def test_odd_unicode_prompts_round_trip(client: TestClient, prompt: str) -> None:
    r = client.post("/v1/videos", json={"prompt": prompt})
    assert r.status_code == 200, r.text
    assert client.get(f"/v1/videos/{r.json()['id']}").json()["prompt"] == prompt.strip()


def test_nul_and_oversized_unicode_prompts_are_refused(client: TestClient) -> None:
    assert_error(client.post("/v1/videos", json={"prompt": "a\x00b"}), 400, "prompt", "NUL")
    assert_error(client.post("/v1/videos", json={"prompt": "狐" * 2001}), 400, "prompt", "2001")


def test_sql_looking_filters_are_just_values(client: TestClient) -> None:
    create(client)
    r = client.get("/v1/videos", params={"batch_id": "' OR 1=1 --"})
    assert r.status_code == 200 and r.json()["data"] == []
    r = client.get("/v1/videos", params={"status": "queued' OR '1'='1"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "status"
    assert len(client.get("/v1/videos").json()["data"]) == 1


def test_json_numbers_must_be_numbers_but_forms_are_text(client: TestClient) -> None:
    assert_error(client.post("/v1/videos", json={"prompt": "p", "num_frames": "13"}), 400, "num_frames", "'13'")
    r = client.post("/v1/videos", data={"prompt": "p", "num_frames": "13"})
    assert r.status_code == 200 and r.json()["num_frames"] == 13
