"""The htmx page and its fragments over a TestClient: markup, polling that stops, CSV errors, paging, auth."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from core import crud, queries
from webapp.app import create_app
from webapp.auth import create_key
from core.db import session_for
from webapp.pages.htmx import HTMX_LOCAL_PATH, HTMX_SRI, HTMX_VERSION
from core.settings import Settings
from core.status import VideoStatus

HX = {"HX-Request": "true"}


def rows(html: str) -> list[str]:
    """Video ids of the rows in a fragment, in order."""
    return re.findall(r'<article class="video [^"]*" id="video-(video_[0-9a-z]+)"', html)


def polls(html: str, video_id: str) -> bool:
    tag = re.search(rf'<article[^>]*id="video-{video_id}"[^>]*>', html)
    assert tag, f"no row for {video_id}"
    return "hx-trigger" in tag[0]


@pytest.fixture
def app_with(settings: Settings) -> Iterator:
    """Build a client for the test's settings with some fields changed."""
    clients = []

    def make(**changes) -> TestClient:
        c = TestClient(create_app(settings.model_copy(update=changes)))
        c.__enter__()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def test_page_pins_htmx_from_the_cdn_with_integrity(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    tag = re.search(r'<script src="([^"]+htmx[^"]+)" integrity="([^"]+)" crossorigin="anonymous"', r.text)
    assert tag, r.text[:1500]
    assert f"htmx.org@{HTMX_VERSION}/dist/htmx.min.js" in tag[1] and tag[2] == HTMX_SRI
    assert re.fullmatch(r"sha384-[A-Za-z0-9+/]{64}", HTMX_SRI)
    assert 'name="prompt"' in r.text and 'id="queue-panel"' in r.text and "No videos yet" in r.text


def test_local_htmx_setting_serves_the_vendored_copy(app_with) -> None:
    html = app_with(htmx_source="local").get("/").text
    assert f'src="/static/vendor/htmx.min.js?v={HTMX_VERSION}"' in html and "cdn.jsdelivr" not in html


def test_static_files_and_no_way_out(client: TestClient) -> None:
    css = client.get("/static/app.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    for bad in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/nope.css"):
        assert client.get(bad).status_code == 404, bad


def test_submit_puts_a_polling_row_on_top(client: TestClient) -> None:
    r = client.post("/ui/videos", data={"prompt": "a red fox", "seed": "7", "num_frames": "13"}, headers=HX)
    assert r.status_code == 200
    [vid] = rows(r.text)
    assert polls(r.text, vid) and 'hx-swap="outerHTML"' in r.text
    assert "#1 in line" in r.text and "seed 7" in r.text and "13 frames" in r.text
    assert 'hx-swap-oob="innerHTML"' in r.text  # clears an earlier form error
    v = client.get(f"/v1/videos/{vid}").json()
    assert v["seed"] == 7 and v["num_frames"] == 13 and v["prompt"] == "a red fox"
    assert rows(client.get("/").text) == [vid]


def test_bad_field_answers_with_a_message_by_the_form(client: TestClient) -> None:
    r = client.post("/ui/videos", data={"prompt": "x", "num_frames": "8"}, headers=HX)
    assert r.status_code == 200  # htmx would not swap a 4xx, and would log it as a console error
    assert r.headers["HX-Retarget"] == "#form-error" and r.headers["HX-Reswap"] == "innerHTML"
    assert 'data-param="num_frames"' in r.text and "6k+1" in r.text
    assert client.get("/v1/videos").json()["data"] == []


def test_without_htmx_the_form_post_redirects_to_the_page(client: TestClient) -> None:
    r = client.post("/ui/videos", data={"prompt": "plain form"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_terminal_row_has_no_trigger_so_polling_stops(client: TestClient) -> None:
    vid = rows(client.post("/ui/videos", data={"prompt": "p"}, headers=HX).text)[0]
    assert polls(client.get(f"/ui/videos/{vid}", headers=HX).text, vid)
    after = client.post(f"/ui/videos/{vid}/cancel", headers=HX).text
    assert not polls(after, vid) and "Cancelled" in after and f'id="cancel-{vid}"' not in after
    assert not polls(client.get(f"/ui/videos/{vid}", headers=HX).text, vid)
    assert client.get(f"/v1/videos/{vid}").json()["status"] == "cancelled"


def test_rerun_copies_settings_and_seed(client: TestClient) -> None:
    first = client.post("/v1/videos", json={"prompt": "again", "seed": 42, "num_inference_steps": 3,
                                            "negative_prompt": "blur", "size": "640x480"}).json()
    new = rows(client.post(f"/ui/videos/{first['id']}/rerun", headers=HX).text)
    assert len(new) == 1 and new[0] != first["id"]
    v = client.get(f"/v1/videos/{new[0]}").json()
    same = ("prompt", "seed", "num_inference_steps", "negative_prompt", "size", "num_frames", "guidance_scale")
    assert {k: v[k] for k in same} == {k: first[k] for k in same}


def test_delete_removes_the_row(client: TestClient) -> None:
    vid = client.post("/v1/videos", json={"prompt": "gone"}).json()["id"]
    r = client.delete(f"/ui/videos/{vid}", headers=HX)
    assert r.status_code == 200 and r.text == ""
    assert client.get(f"/v1/videos/{vid}").status_code == 404
    assert client.get(f"/ui/videos/{vid}", headers=HX).text == ""  # a poll of a deleted row removes it


def test_csv_with_bad_rows_lists_them_and_queues_nothing(client: TestClient) -> None:
    csv = b"prompt,seed,num_frames\nfine,1,7\n,2,7\nalso,x,7\nok,3,8\n"
    r = client.post("/ui/batches", files={"file": ("p.csv", csv, "text/csv")}, headers=HX)
    assert r.status_code == 200 and "nothing was queued" in r.text
    table = re.findall(r"<tr><td>(\d+)</td><td>([^<]+)</td>", r.text)
    assert table == [("2", "prompt"), ("3", "seed"), ("4", "num_frames")]
    assert client.get("/v1/videos").json()["data"] == [] and client.get("/v1/batches").json()["data"] == []


def test_good_csv_adds_the_batch_card_and_its_rows(client: TestClient) -> None:
    csv = b"prompt,seed\none,1\ntwo,2\nthree,3\n"
    r = client.post("/ui/batches", files={"file": ("three.csv", csv, "text/csv")}, headers=HX)
    assert r.status_code == 200 and r.headers["HX-Trigger"] == "t2v-batch-queued"
    assert "Queued 3 videos from three.csv" in r.text
    assert 'hx-swap-oob="afterbegin:#batch-list"' in r.text and 'hx-swap-oob="afterbegin:#video-rows"' in r.text
    batch = client.get("/v1/batches").json()["data"][0]
    assert f'id="batch-{batch["id"]}"' in r.text and "of 3" in r.text
    prompts = [v["prompt"] for v in client.get("/v1/videos").json()["data"]]
    assert prompts == ["three", "two", "one"]
    assert [client.get(f"/v1/videos/{i}").json()["prompt"] for i in rows(r.text)] == prompts
    card = client.get(f"/ui/batches/{batch['id']}", headers=HX).text
    assert "hx-trigger" in card
    card = client.post(f"/ui/batches/{batch['id']}/cancel", headers=HX).text
    assert "hx-trigger" not in card and "3 cancelled" in card


def test_csv_problems_without_rows(client: TestClient) -> None:
    r = client.post("/ui/batches", files={"file": ("x.csv", b"seed\n1\n", "text/csv")}, headers=HX)
    assert "no &#39;prompt&#39; column" in r.text
    r = client.post("/ui/batches", files={"file": ("", b"", "text/csv")}, headers=HX)
    assert "Choose a CSV file" in r.text


def test_pages_walk_everything_with_a_cursor_and_filters(client: TestClient) -> None:
    made = [client.post("/v1/videos", json={"prompt": f"p{i}"}).json()["id"] for i in range(45)]
    seen, html = [], client.get("/").text
    while True:
        seen += rows(html)
        more = re.search(r'hx-get="/ui/videos\?([^"]+)"', html)
        if not more:
            break
        html = client.get(f"/ui/videos?{more[1].replace('&amp;', '&')}", headers=HX).text
    assert seen == made[::-1]
    client.post(f"/v1/videos/{made[3]}/cancel")
    r = client.get("/", params={"status": "cancelled"}, headers={**HX, "HX-Target": "video-list"})
    assert rows(r.text) == [made[3]] and "<html" not in r.text
    r = client.get("/", params={"status": "completed"}, headers={**HX, "HX-Target": "video-list"})
    assert rows(r.text) == [] and "No videos match" in r.text
    # A stale cursor (its video was deleted) starts from the top rather than failing the page.
    assert rows(client.get("/", params={"after": "video_gone"}).text)[0] == made[-1]


def test_batch_filter(client: TestClient) -> None:
    client.post("/v1/videos", json={"prompt": "alone"})
    b = client.post("/v1/batches", json={"videos": [{"prompt": "in a"}, {"prompt": "in b"}]}).json()
    html = client.get("/", params={"batch_id": b["id"]}).text
    assert len(rows(html)) == 2 and f'<option value="{b["id"]}" selected>' in html


def test_queue_panel_and_api(client: TestClient) -> None:
    client.post("/v1/videos", json={"prompt": "short one"})
    client.post("/v1/videos", json={"prompt": "long one", "num_frames": 163, "num_inference_steps": 100, "size": "848x480"})
    q = client.get("/v1/queue").json()
    assert q["object"] == "queue" and q["backend"] == "local"
    assert {x["name"]: (x["running"], x["waiting"]) for x in q["queues"]} == {"short": (0, 1), "long": (0, 1)}
    assert q["slots"]["in_use"] == 0 and q["slots"]["total"] >= 1
    assert [w["position"] for w in q["waiting"]] == [1, 2]
    html = client.get("/ui/queue", headers=HX).text
    assert 'hx-trigger="every' in html and "short one" in html


def test_page_works_when_api_keys_are_required(app_with, settings: Settings) -> None:
    client = app_with(auth_required=True)
    with session_for(settings.db_url) as s:
        _, token = create_key(s, tenant="acme")
    shell = client.get("/")
    assert shell.status_code == 200 and 'hx-trigger="load"' in shell.text and "needs an API key" in shell.text
    auth = {**HX, "Authorization": f"Bearer {token}"}
    assert client.post("/ui/videos", data={"prompt": "p"}, headers=HX).status_code == 401
    vid = rows(client.post("/ui/videos", data={"prompt": "p"}, headers=auth).text)[0]
    assert rows(client.get("/", headers={**auth, "HX-Target": "video-list"}).text) == [vid]
    assert client.get("/ui/queue", headers=auth).status_code == 200


def test_start_estimate_learns_from_recent_run_times(client: TestClient) -> None:
    done = client.post("/v1/videos", json={"prompt": "finished"}).json()["id"]
    with session_for(client.app.state.settings.db_url) as s:
        video = queries.get_video(s, video_id=done, tenant=None)
        crud.transition(s, video=video, to=VideoStatus.in_progress, reason="test", now=1000.0)
        crud.transition(s, video=video, to=VideoStatus.completed, reason="test", now=1090.0)
        s.commit()
    first = client.post("/v1/videos", json={"prompt": "first"}).json()["id"]
    second = client.post("/v1/videos", json={"prompt": "second"}).json()["id"]
    html = client.get("/").text
    row = lambda vid: html[html.index(f'id="video-{vid}"'):].split("</article>")[0]  # noqa: E731
    assert "#1 in line" in row(first) and "starts next" in row(first)
    assert "#2 in line" in row(second) and "starts in about 90 s" in row(second)


def test_local_htmx_copy_matches_the_pinned_sri() -> None:
    """The vendored file (from `make htmx`) is byte for byte what the CDN tag's integrity hash pins."""
    assert HTMX_LOCAL_PATH.is_file(), "webapp/static/vendor/htmx.min.js is missing: run `make htmx`"
    digest = base64.b64encode(hashlib.sha384(HTMX_LOCAL_PATH.read_bytes()).digest()).decode()
    assert f"sha384-{digest}" == HTMX_SRI
