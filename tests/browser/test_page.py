"""The web page in a real browser: submit, watch, cancel, CSV batches, paging, phone and keyboard."""

from __future__ import annotations

import re
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from scripts.harness.server import Server
from core import crud, queries
from webapp.auth import create_key
from core.db import session_for
from core.status import VideoStatus

pytestmark = pytest.mark.browser


def first_row(page):
    return page.locator("#video-rows > article.video").first


def row_id(row) -> str:
    return row.get_attribute("id").removeprefix("video-")


def polls_of(page, video_id: str) -> list[str]:
    """Start counting the requests a row makes for itself."""
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url) if r.url.endswith(f"/ui/videos/{video_id}") else None)
    return seen


def db_url(server: Server) -> str:
    return f"sqlite:///{(server.data_dir / 't2v.db').resolve()}"


def test_page_loads_clean_with_local_htmx(idle_web: Server, open_page, shot) -> None:
    page, console = open_page()
    page.goto(idle_web.url + "/")
    assert page.evaluate("typeof htmx") == "object"
    assert page.evaluate("htmx.version").startswith("2.")
    page.get_by_role("heading", name="New video").wait_for()
    page.get_by_text("No videos yet").wait_for()
    shot(page, "01-empty")


def test_submit_watch_cancel_and_stop_polling(idle_web: Server, open_page, shot) -> None:
    page, _ = open_page()
    page.goto(idle_web.url + "/")
    page.get_by_label("Prompt", exact=True).fill("A lighthouse in a storm, waves crashing")
    page.get_by_text("Advanced").click()
    page.locator("input[name=seed]").fill("1234")
    page.locator("input[name=num_frames]").fill("13")
    page.get_by_role("button", name="Generate").click()
    row = first_row(page)
    row.wait_for()
    assert "A lighthouse in a storm" in row.inner_text()
    vid = row_id(row)
    assert row.get_attribute("data-status") == "queued" and row.get_attribute("hx-trigger")
    assert "#1 in line" in row.inner_text() and "seed 1234" in row.inner_text()
    # A second one waits behind it.
    page.get_by_label("Prompt", exact=True).fill("A second prompt, behind the first")
    page.get_by_role("button", name="Generate").click()
    page.locator("#video-rows > article.video").nth(1).wait_for()
    assert "#2 in line" in first_row(page).inner_text()
    page.locator("#queue-panel").get_by_text("short one", exact=False).count()  # panel renders; counts below
    page.wait_for_function("document.querySelector('#queue-panel tbody').innerText.includes('2')")
    shot(page, "02-queued")

    copy = page.locator(f"#seed-{vid}")
    copy.click()
    page.wait_for_function("id => document.getElementById(id).textContent.includes('1234')", arg=f"seed-{vid}")
    page.locator(f"#rerun-{vid}").click()
    page.wait_for_function("document.querySelectorAll('#video-rows > article.video').length === 3")
    rerun = row_id(first_row(page))
    assert rerun != vid and "seed 1234" in first_row(page).inner_text()
    assert "A lighthouse in a storm" in first_row(page).inner_text()

    polls = polls_of(page, vid)
    page.wait_for_timeout(3500)
    assert polls, "a queued row polls itself"
    page.locator(f"#cancel-{vid}").click()
    page.locator(f"#video-{vid}[data-status=cancelled]").wait_for()
    assert page.locator(f"#video-{vid}").get_attribute("hx-trigger") is None
    page.wait_for_timeout(500)
    before = len(polls)
    page.wait_for_timeout(5000)
    assert len(polls) == before, f"the cancelled row kept polling: {polls[before:]}"
    assert httpx.get(f"{idle_web.url}/v1/videos/{vid}").json()["status"] == "cancelled"
    shot(page, "03-cancelled")


def test_failed_video_shows_the_error_in_plain_words(idle_web: Server, open_page, shot) -> None:
    vid = httpx.post(f"{idle_web.url}/v1/videos", json={"prompt": "this one will fail"}).json()["id"]
    page, _ = open_page()
    page.goto(idle_web.url + "/")
    first_row(page).wait_for()
    with session_for(db_url(idle_web)) as s:
        video = queries.get_video(s, video_id=vid, tenant=None)
        crud.transition(s, video=video, to=VideoStatus.in_progress, reason="test", progress=40)
        s.commit()
    page.locator(f"#video-{vid}[data-status=in_progress] progress").wait_for()
    assert page.locator(f"#video-{vid} progress").get_attribute("value") == "40"
    shot(page, "04-running")
    with session_for(db_url(idle_web)) as s:
        video = queries.get_video(s, video_id=vid, tenant=None)
        crud.transition(s, video=video, to=VideoStatus.failed, reason="test", error_code="out_of_memory",
                        error_message="the GPU ran out of memory at 848x480 with 163 frames; try fewer frames")
        s.commit()
    page.locator(f"#video-{vid}[data-status=failed]").wait_for()
    assert "ran out of memory" in page.locator(f"#video-{vid} .failure").inner_text()
    shot(page, "05-failed")
    httpx.post(f"{idle_web.url}/v1/batches", json={"name": "evening set", "videos": [{"prompt": "dusk"}]})
    dark, _ = open_page(color_scheme="dark")
    dark.goto(idle_web.url + "/")
    dark.locator(f"#video-{vid}[data-status=failed]").wait_for()
    shot(dark, "05-failed-dark")


def test_csv_bad_rows_then_a_good_file(idle_web: Server, open_page, shot, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,seed,num_frames\na calm lake,1,7\n,2,7\na forest,3,8\n")
    good = tmp_path / "good.csv"
    good.write_text("prompt,seed\na calm lake at dawn,1\na forest in fog,2\na city at night,3\n")
    page, _ = open_page()
    page.goto(idle_web.url + "/")
    page.locator("#csv-file").set_input_files(str(bad))
    page.get_by_role("button", name="Upload").click()
    table = page.locator("#csv-result table.csv-errors")
    table.wait_for()
    cells = [r.locator("td").all_inner_texts()[:2] for r in table.locator("tbody tr").all()]
    assert cells == [["2", "prompt"], ["3", "num_frames"]]
    assert httpx.get(f"{idle_web.url}/v1/videos").json()["data"] == []
    shot(page, "06-csv-errors")

    page.locator("#csv-file").set_input_files(str(good))
    page.get_by_role("button", name="Upload").click()
    page.get_by_text("Queued 3 videos from good.csv").wait_for()
    card = page.locator("#batch-list > article.batch").first
    card.wait_for()
    assert "of 3" in card.inner_text() and "3 waiting" in card.inner_text()
    assert page.locator("#csv-result table").count() == 0
    assert page.locator("#video-rows > article.video").count() == 3
    assert page.locator("#csv-file").input_value() == ""  # reset for the next upload
    card.get_by_role("button", name="Cancel batch").click()
    page.locator("#batch-list > article.batch[data-status=cancelled]").wait_for()
    shot(page, "07-csv-batch")


def test_pagination_and_filters(idle_web: Server, open_page, shot) -> None:
    batch = httpx.post(f"{idle_web.url}/v1/batches",
                       json={"name": "many", "videos": [{"prompt": f"prompt number {i}"} for i in range(45)]}).json()
    httpx.post(f"{idle_web.url}/v1/videos/{httpx.get(f'{idle_web.url}/v1/videos').json()['data'][0]['id']}/cancel")
    page, _ = open_page()
    page.goto(idle_web.url + "/")
    rows = page.locator("#video-rows > article.video")
    assert rows.count() == 20
    page.get_by_role("link", name="Load older videos").focus()
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelectorAll('#video-rows > article.video').length === 40")
    page.wait_for_function("document.activeElement === document.querySelectorAll('#video-rows > article.video')[20]")
    page.get_by_role("link", name="Load older videos").click()
    page.wait_for_function("document.querySelectorAll('#video-rows > article.video').length === 45")
    assert page.get_by_role("link", name="Load older videos").count() == 0
    texts = rows.locator(".prompt").all_inner_texts()
    assert texts == [f"prompt number {i}" for i in range(44, -1, -1)]
    shot(page, "08-paged", full_page=False)

    page.locator("#filter-status").select_option("cancelled")
    page.wait_for_function("document.querySelectorAll('#video-rows > article.video').length === 1")
    assert page.url.endswith("/?status=cancelled")
    page.locator("#filter-status").select_option("")
    page.wait_for_function("document.querySelectorAll('#video-rows > article.video').length === 20")
    page.locator("#filter-batch").select_option(batch["id"])
    page.wait_for_url(re.compile(f"batch_id={batch['id']}"))
    page.wait_for_function("document.querySelectorAll('#video-rows > article.video .meta a').length === 20")


def test_phone_width_and_keyboard(idle_web: Server, open_page, shot) -> None:
    httpx.post(f"{idle_web.url}/v1/batches", json={"videos": [{"prompt": "a small boat on a wide, calm sea"}]})
    page, _ = open_page(width=390, height=844, is_mobile=True, has_touch=True, device_scale_factor=2)
    page.goto(idle_web.url + "/")
    first_row(page).wait_for()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "sideways scrolling"
    page.locator("#prompt").focus()
    page.keyboard.type("Typed with the keyboard only")
    page.keyboard.press("Control+Enter")
    page.get_by_text("Typed with the keyboard only").wait_for()
    # Focus survives the row's polling swaps (htmx restores it by id).
    vid = row_id(first_row(page))
    page.locator(f"#cancel-{vid}").focus()
    polls = polls_of(page, vid)
    page.wait_for_timeout(4500)
    assert polls, "the queued row should have polled meanwhile"
    assert page.evaluate("document.activeElement.id") == f"cancel-{vid}"
    # Tab from the prompt reaches the advanced toggle, then the submit button.
    page.locator("#prompt").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.tagName") == "SUMMARY"
    page.keyboard.press("Enter")
    assert page.locator("#advanced").get_attribute("open") is not None
    shot(page, "09-phone")
    page.evaluate("window.scrollTo(0, document.querySelector('#videos').offsetTop)")
    shot(page, "09-phone-videos", full_page=False)


def test_bad_field_is_shown_and_focused(idle_web: Server, open_page) -> None:
    page, _ = open_page()
    page.goto(idle_web.url + "/")
    page.get_by_label("Prompt", exact=True).fill("x")
    page.get_by_text("Advanced").click()
    page.locator("input[name=num_inference_steps]").fill("500")
    page.locator("input[name=num_inference_steps]").evaluate("e => e.removeAttribute('max')")  # server-side check
    page.get_by_role("button", name="Generate").click()
    alert = page.locator("#form-error [role=alert]")
    alert.wait_for()
    assert "num_inference_steps" in alert.inner_text()
    assert page.evaluate("document.activeElement.name") == "num_inference_steps"
    assert page.locator("#video-rows > article.video").count() == 0


def test_api_key_is_sent_as_bearer(idle_web: Server, open_page) -> None:
    with session_for(db_url(idle_web)) as s:
        _, token = create_key(s, tenant="acme")
    page, _ = open_page()
    page.goto(idle_web.url + "/")
    page.get_by_text("API key").first.click()
    page.locator("#api-key").fill(token)
    with page.expect_navigation():
        page.get_by_role("button", name="Save").click()
    seen: list[str | None] = []
    page.on("request", lambda r: seen.append(r.headers.get("authorization")) if "/ui/" in r.url else None)
    page.wait_for_timeout(3500)  # the queue panel polls
    assert seen and all(h == f"Bearer {token}" for h in seen)
    page.get_by_text("API key").first.click()
    assert "A key is saved" in page.locator("#key-state").inner_text()
    with page.expect_navigation():
        page.locator("#key-forget").click()
    assert page.evaluate("localStorage.getItem('t2v.apiKey')") is None


def wait_terminal(page, selector: str, seconds: float = 300, on_running=None) -> set[int]:
    """Wait until the element reaches a terminal status; returns the progress values seen on the way."""
    seen: set[int] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        el = page.locator(selector)
        status = el.get_attribute("data-status")
        if status == "in_progress":
            seen.add(int(el.get_attribute("data-progress") or 0))
            if on_running:
                on_running()
                on_running = None
        if status in ("completed", "failed", "cancelled"):
            return seen
        page.wait_for_timeout(200)
    raise AssertionError(f"{selector} did not finish in {seconds} s: {page.locator(selector).inner_text()}")


@pytest.mark.slow
def test_submit_completes_and_plays_then_batch_zip(web: Server, open_page, shot, tmp_path: Path) -> None:
    page, _ = open_page()
    page.goto(web.url + "/")
    page.get_by_label("Prompt", exact=True).fill("A paper boat drifting down a rainy street")
    page.get_by_text("Advanced").click()
    page.locator("input[name=num_frames]").fill("7")
    page.locator("input[name=num_inference_steps]").fill("6")
    page.get_by_role("button", name="Generate").click()
    row = first_row(page)
    row.wait_for()
    vid = row_id(row)
    progress = wait_terminal(page, f"#video-{vid}",
                             on_running=lambda: shot(page, "10-running-real", full_page=False))
    row = page.locator(f"#video-{vid}")
    assert row.get_attribute("data-status") == "completed", row.inner_text()
    assert any(0 < p < 100 for p in progress), f"the bar never moved between 0 and 100: {sorted(progress)}"
    video = row.locator("video")
    duration = video.evaluate("""v => new Promise((ok, no) => {
        if (v.readyState >= 1) return ok(v.duration);
        v.addEventListener('loadedmetadata', () => ok(v.duration));
        v.addEventListener('error', () => no(new Error('video error ' + (v.error && v.error.code))));
        v.load();
    })""")
    assert duration > 0, duration
    assert video.get_attribute("poster").endswith("variant=thumbnail")
    href = row.get_by_role("link", name="Download").get_attribute("href")
    r = httpx.get(web.url + href)
    assert r.status_code == 200 and r.content[4:8] == b"ftyp"
    polls = polls_of(page, vid)
    page.wait_for_timeout(4000)
    assert polls == [], "a completed row must not poll"
    assert re.search(r"took \d+", row.inner_text())
    shot(page, "11-completed")

    csv_file = tmp_path / "two.csv"
    csv_file.write_text("prompt,num_frames,num_inference_steps,seed\nrain on a window,7,2,1\nsnow on a roof,7,2,2\n")
    page.locator("#csv-file").set_input_files(str(csv_file))
    page.get_by_role("button", name="Upload").click()
    card = page.locator("#batch-list > article.batch").first
    card.wait_for()
    batch_id = card.get_attribute("id").removeprefix("batch-")
    wait_terminal(page, f"#batch-{batch_id}")
    card = page.locator(f"#batch-{batch_id}")
    assert card.get_attribute("data-status") == "completed" and "2 done" in card.inner_text()
    with page.expect_download() as download:
        card.get_by_role("link", name=re.compile("Download zip")).click()
    path = download.value.path()
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert names[0] == "index.csv" and len(names) == 3 and all(n.endswith(".mp4") for n in names[1:])
        assert all(zf.read(n)[4:8] == b"ftyp" for n in names[1:])
    shot(page, "12-batch-done")


@pytest.mark.slow
def test_with_api_keys_required_the_page_plays_and_downloads(server_factory, open_page, shot) -> None:
    web = server_factory(env={"T2V_HTMX_SOURCE": "local", "T2V_AUTH_REQUIRED": "true"})
    with session_for(db_url(web)) as s:
        _, token = create_key(s, tenant="acme")
    page, console = open_page()
    page.goto(web.url + "/")
    assert page.locator("#key-box").get_attribute("open") is not None  # the shell asks for a key first
    page.evaluate("k => localStorage.setItem('t2v.apiKey', k)", token)
    page.reload()
    page.get_by_text("No videos yet").wait_for()
    page.get_by_label("Prompt", exact=True).fill("A kite over a beach")
    page.get_by_text("Advanced").click()
    page.locator("input[name=num_frames]").fill("7")
    page.locator("input[name=num_inference_steps]").fill("2")
    page.get_by_role("button", name="Generate").click()
    row = first_row(page)
    row.wait_for()
    vid = row_id(row)
    wait_terminal(page, f"#video-{vid}")
    video = page.locator(f"#video-{vid} video")
    duration = video.evaluate("""v => new Promise((ok, no) => {
        const done = () => ok(v.duration);
        if (v.readyState >= 1) return done();
        v.addEventListener('loadedmetadata', done);
        v.addEventListener('error', () => no(new Error('video error')));
    })""")
    assert duration > 0 and video.evaluate("v => v.src.startsWith('blob:')")
    with page.expect_download() as download:
        page.locator(f"#download-{vid}").click()
    assert Path(download.value.path()).read_bytes()[4:8] == b"ftyp"
    assert httpx.get(f"{web.url}/v1/videos/{vid}/content").status_code == 401
    page.get_by_text("API key").first.click()
    shot(page, "13-with-api-key")


@pytest.mark.slow
@pytest.mark.minio
def test_video_plays_from_a_presigned_storage_url(server_factory, minio_server, open_page) -> None:
    """S3 storage with download redirects (the cluster default): the page's player follows the 302 to
    MinIO and plays from there; the webapp serves no video bytes."""
    web = server_factory(env={"T2V_HTMX_SOURCE": "local", "T2V_STORAGE_URL": minio_server.url("t2v-page"),
                              "T2V_DOWNLOAD_REDIRECT": "true", "T2V_S3_ACCESS_KEY": minio_server.access_key,
                              "T2V_S3_SECRET_KEY": minio_server.secret_key})
    vid = httpx.post(web.url + "/v1/videos", json={"prompt": "a lantern", "num_frames": 7, "size": "256x144",
                                                   "num_inference_steps": 2}).json()["id"]
    deadline = time.monotonic() + 240
    while httpx.get(f"{web.url}/v1/videos/{vid}").json()["status"] != "completed" and time.monotonic() < deadline:
        time.sleep(0.5)
    page, _ = open_page()
    seen: list[tuple[int, str]] = []
    page.on("response", lambda r: seen.append((r.status, r.url)))
    page.goto(web.url + "/")
    video = page.locator(f"#video-{vid} video")
    duration = video.evaluate("""v => new Promise((ok, no) => {
        if (v.readyState >= 1) return ok(v.duration);
        v.addEventListener('loadedmetadata', () => ok(v.duration));
        v.addEventListener('error', () => no(new Error('video error ' + (v.error && v.error.code))));
        v.load();
    })""")
    assert duration > 0, duration
    assert (302, f"{web.url}/v1/videos/{vid}/content") in seen, seen
    assert any(status in (200, 206) and url.startswith(f"http://{minio_server.endpoint}/t2v-page/videos/{vid}/")
               for status, url in seen), seen


@pytest.mark.slow
@pytest.mark.minio
def test_with_keys_required_the_player_fetches_through_the_redirect(server_factory, minio_server, open_page) -> None:
    """Cluster defaults (keys required, downloads redirected): the page fetches the MP4 with the key,
    the browser follows the 302 to MinIO (dropping the key on the way, as fetch does across origins),
    and plays the blob."""
    web = server_factory(env={"T2V_HTMX_SOURCE": "local", "T2V_AUTH_REQUIRED": "true",
                              "T2V_STORAGE_URL": minio_server.url("t2v-page-keys"), "T2V_DOWNLOAD_REDIRECT": "true",
                              "T2V_S3_ACCESS_KEY": minio_server.access_key,
                              "T2V_S3_SECRET_KEY": minio_server.secret_key})
    with session_for(db_url(web)) as s:
        _, token = create_key(s, tenant="acme")
    auth = {"Authorization": f"Bearer {token}"}
    vid = httpx.post(web.url + "/v1/videos", headers=auth, json={
        "prompt": "a lantern", "num_frames": 7, "size": "256x144", "num_inference_steps": 2}).json()["id"]
    deadline = time.monotonic() + 240
    while (httpx.get(f"{web.url}/v1/videos/{vid}", headers=auth).json()["status"] != "completed"
           and time.monotonic() < deadline):
        time.sleep(0.5)
    page, _ = open_page()
    page.goto(web.url + "/")
    page.evaluate(f"localStorage.setItem('t2v.apiKey', {token!r})")
    page.reload()
    video = page.locator(f"#video-{vid} video")
    video.wait_for()
    page.wait_for_function(f"document.querySelector('#video-{vid} video').src.startsWith('blob:')")
    duration = video.evaluate("""v => new Promise((ok, no) => {
        if (v.readyState >= 1) return ok(v.duration);
        v.addEventListener('loadedmetadata', () => ok(v.duration));
        v.addEventListener('error', () => no(new Error('video error ' + (v.error && v.error.code))));
    })""")
    assert duration > 0, duration
