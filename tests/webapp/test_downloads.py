"""Downloads with S3 storage (a real MinIO): GET .../content redirects to a presigned URL that
expires, so the bytes skip the webapp; Range requests, the CLI and the page's video element follow it."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.parse
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from jobcontract.records import video_keys
from tests.plugins.minio import MinioServer
from scripts.harness.server import REPO, start_server
from tests.webapp.test_batch_zip import finish
from webapp.app import create_app
from core.settings import Settings

pytestmark = pytest.mark.minio
MP4 = bytes(range(256)) * 40  # 10,240 bytes; what the bytes are does not matter here


@pytest.fixture
def s3_settings(settings: Settings, minio_server: MinioServer, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("T2V_S3_ACCESS_KEY", minio_server.access_key)
    monkeypatch.setenv("T2V_S3_SECRET_KEY", minio_server.secret_key)
    return settings.model_copy(update={"storage_url": minio_server.url("t2v-downloads"), "download_redirect": True,
                                       "presign_seconds": 120})


def test_content_redirects_to_a_presigned_url_that_serves_ranges(s3_settings: Settings,
                                                                 minio_server: MinioServer) -> None:
    with TestClient(create_app(s3_settings)) as c:
        vid = c.post("/v1/videos", json={"prompt": "p"}).json()["id"]
        finish(c, vid, MP4)
        r = c.get(f"/v1/videos/{vid}/content", follow_redirects=False)
        assert r.status_code == 302 and r.headers["cache-control"] == "no-store"
        url = r.headers["location"]
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        assert url.startswith(f"http://{minio_server.endpoint}/t2v-downloads/{video_keys(vid)['video']}?")
        assert query["X-Amz-Expires"] == ["120"] and query["response-content-type"] == ["video/mp4"]
        whole = httpx.get(url)
        assert whole.status_code == 200 and whole.content == MP4 and whole.headers["content-type"] == "video/mp4"
        part = httpx.get(url, headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == MP4[100:200]
        assert part.headers["content-range"] == f"bytes 100-199/{len(MP4)}"
        thumb = c.get(f"/v1/videos/{vid}/content", params={"variant": "thumbnail"}, follow_redirects=False)
        assert thumb.status_code == 404  # no thumbnail was stored: checked before any redirect
        assert c.get(f"/v1/videos/{c.post('/v1/videos', json={'prompt': 'q'}).json()['id']}/content",
                     follow_redirects=False).status_code == 409


def test_a_presigned_url_expires(s3_settings: Settings) -> None:
    # The signature's date is in whole seconds, so a URL signed for N seconds lasts N-1 to N: 1 s left
    # a loaded machine's first request too late (403). 4 s leaves it 3.
    with TestClient(create_app(s3_settings)) as c:
        store = c.app.state.store
        store.put_bytes("videos/x/video.mp4", MP4)
        signed = time.monotonic()
        url = store.presigned_url("videos/x/video.mp4", expires=timedelta(seconds=4))
        assert httpx.get(url).status_code == 200
        time.sleep(max(0.0, signed + 5.5 - time.monotonic()))
        expired = httpx.get(url)
        assert expired.status_code == 403 and "expired" in expired.text.lower()


def test_a_public_url_is_signed_for_the_host_clients_use(s3_settings: Settings, minio_server: MinioServer) -> None:
    """MinIO reached as localhost:PORT by clients while t2v uses 127.0.0.1:PORT: the signature is for the
    public host, and that URL works where the in-cluster one would not have been signed for it."""
    port = minio_server.endpoint.rsplit(":", 1)[1]
    public = s3_settings.model_copy(update={"s3_public_url": f"http://localhost:{port}"})
    with TestClient(create_app(public)) as c:
        vid = c.post("/v1/videos", json={"prompt": "p"}).json()["id"]
        finish(c, vid, MP4)
        url = c.get(f"/v1/videos/{vid}/content", follow_redirects=False).headers["location"]
    assert url.startswith(f"http://localhost:{port}/t2v-downloads/")
    assert httpx.get(url).content == MP4
    assert httpx.get(url.replace("localhost", "127.0.0.1")).status_code == 403  # signed for the public host


def test_redirects_are_off_on_the_embedded_default(settings: Settings) -> None:
    assert not settings.redirects_downloads
    assert settings.model_copy(update={"backend": "kubernetes"}).redirects_downloads


@pytest.mark.slow
def test_the_cli_follows_the_redirect(tmp_path: Path, minio_server: MinioServer) -> None:
    server = start_server(tmp_path / "data", env={
        "T2V_STORAGE_URL": minio_server.url("t2v-cli-downloads"), "T2V_DOWNLOAD_REDIRECT": "true",
        "T2V_S3_ACCESS_KEY": minio_server.access_key, "T2V_S3_SECRET_KEY": minio_server.secret_key})
    try:
        api = httpx.Client(base_url=server.url, timeout=30)
        vid = api.post("/v1/videos", json={"prompt": "a boat", "num_frames": 7, "size": "256x144",
                                           "num_inference_steps": 2}).json()["id"]
        deadline = time.monotonic() + 240
        while api.get(f"/v1/videos/{vid}").json()["status"] != "completed" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert api.get(f"/v1/videos/{vid}/content").status_code == 302  # httpx does not follow unless told
        out = tmp_path / "boat.mp4"
        r = subprocess.run([sys.executable, "-m", "t2vcli.main", "download", vid, "-o", str(out)], cwd=REPO,
                           env={**server.env, "T2V_URL": server.url}, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == httpx.get(api.get(f"/v1/videos/{vid}/content").headers["location"]).content
        assert out.read_bytes()[4:8] == b"ftyp"
    finally:
        server.stop()
