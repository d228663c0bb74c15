"""Object storage: the same behaviour from the local folder and from a real MinIO server."""

from __future__ import annotations

import re

import hashlib
import os
import threading
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from jobcontract.errors import ObjectNotFound, StorageError, StorageUnavailable
from jobcontract.storage import LocalStore, ObjectStore, S3Store, open_store


@pytest.fixture(params=["local", pytest.param("minio", marks=pytest.mark.minio)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return open_store(f"file://{tmp_path / 'objects'}")
    minio = request.getfixturevalue("minio_server")
    bucket = f"t{abs(hash(request.node.name)) % 10**10}"
    return S3Store(endpoint=minio.endpoint, bucket=bucket, access_key=minio.access_key,
                   secret_key=minio.secret_key, secure=False)


def test_put_get_size_list_delete(store: ObjectStore, tmp_path: Path) -> None:
    store.put_bytes("videos/a/result.json", b'{"ok": true}', content_type="application/json")
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    store.put_file("videos/a/video.mp4", src, content_type="video/mp4")
    assert store.get_bytes("videos/a/result.json") == b'{"ok": true}'
    assert store.size("videos/a/video.mp4") == src.stat().st_size
    assert store.exists("videos/a/video.mp4") and not store.exists("videos/b/video.mp4")
    assert store.list("videos/a") == ["videos/a/result.json", "videos/a/video.mp4"]
    whole = b"".join(store.iter_range("videos/a/video.mp4"))
    assert hashlib.sha256(whole).digest() == hashlib.sha256(src.read_bytes()).digest()
    assert b"".join(store.iter_range("videos/a/video.mp4", 10, 19)) == src.read_bytes()[10:20]
    store.delete("videos/a/video.mp4")
    store.delete("videos/a/video.mp4")  # absent is fine
    assert not store.exists("videos/a/video.mp4")
    with pytest.raises(ObjectNotFound):
        store.get_bytes("videos/a/video.mp4")
    with pytest.raises(ObjectNotFound):
        store.size("nothing/here")


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "..", "a\\b"])
def test_keys_cannot_escape(store: ObjectStore, key: str) -> None:
    with pytest.raises(StorageError):
        store.put_bytes(key, b"x")


def test_local_writes_are_atomic(tmp_path: Path) -> None:
    """A reader never sees a partial object: it sees the old or the new bytes."""
    store = LocalStore(tmp_path)
    old, new = b"a" * 2_000_000, b"b" * 2_000_000
    store.put_bytes("k", old)
    seen = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            data = store.get_bytes("k")
            seen.add((len(data), data[:1], data[-1:]))

    t = threading.Thread(target=reader)
    t.start()
    for _ in range(20):
        store.put_bytes("k", new)
        store.put_bytes("k", old)
    stop.set()
    t.join()
    assert seen <= {(2_000_000, b"a", b"a"), (2_000_000, b"b", b"b")}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.minio
def test_presigned_url_downloads_the_object(minio_server) -> None:
    store = S3Store(endpoint=minio_server.endpoint, bucket="presign", access_key=minio_server.access_key,
                    secret_key=minio_server.secret_key, secure=False)
    store.put_bytes("videos/x/video.mp4", b"mp4 bytes", content_type="video/mp4")
    url = store.presigned_url("videos/x/video.mp4", expires=timedelta(minutes=5))
    assert url and url.startswith(f"http://{minio_server.endpoint}/presign/")
    assert httpx.get(url).content == b"mp4 bytes"


def test_local_store_has_no_presigned_urls(tmp_path: Path) -> None:
    assert LocalStore(tmp_path).presigned_url("a", expires=timedelta(minutes=1)) is None


@pytest.mark.minio
def test_open_store_reads_s3_url_and_credentials(minio_server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T2V_S3_ACCESS_KEY", minio_server.access_key)
    monkeypatch.setenv("T2V_S3_SECRET_KEY", minio_server.secret_key)
    store = open_store(minio_server.url("fromurl"))
    store.put_bytes("a/b", b"1")
    assert store.get_bytes("a/b") == b"1"


def test_unreachable_s3_is_storage_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    from scripts.harness.net import free_port

    with pytest.raises(StorageUnavailable):
        S3Store(endpoint=f"127.0.0.1:{free_port()}", bucket="bucket", access_key="a", secret_key="s", secure=False)


@pytest.mark.minio
def test_a_bucket_only_url_takes_the_endpoint_from_aws_endpoint_url(minio_server,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """manifests/base: `T2V_STORAGE_URL=s3://t2v-videos` and the t2v-storage Secret's AWS_* keys."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", minio_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", minio_server.secret_key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{minio_server.endpoint}")
    store = open_store("s3://bucketonly")
    store.put_bytes("a/b", b"1")
    assert open_store(minio_server.url("bucketonly")).get_bytes("a/b") == b"1"


@pytest.mark.parametrize(("url", "endpoint", "fragment"), [
    ("ftp://x/y", "", "scheme"),
    ("s3://host", "", "AWS_ENDPOINT_URL=''"),
    ("s3://bucket", "t2v-minio:9000", "AWS_ENDPOINT_URL='t2v-minio:9000' is not an http(s)://host[:port]"),
    ("s3://host/a/b", "", "s3://host[:port]/bucket"),
    ("file://", "", "no path"),
])
def test_bad_storage_urls(url: str, endpoint: str, fragment: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("T2V_S3_ACCESS_KEY", "a")
    monkeypatch.setenv("T2V_S3_SECRET_KEY", "b")
    with pytest.raises(StorageError, match=re.escape(fragment)):
        open_store(url)


def test_a_starting_minio_does_not_stall_callers_for_its_retry_after() -> None:
    """Right after start MinIO answers 503 XMinioServerNotInitialized with `Retry-After: 60`; the client
    retries on its own short backoff and then reports storage unavailable, instead of sleeping a minute."""
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class NotInitialized(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = b"<Error><Code>XMinioServerNotInitialized</Code><Message>Server not initialized</Message></Error>"
            self.send_response(503)
            self.send_header("Retry-After", "60")
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotInitialized)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        t0 = time.monotonic()
        with pytest.raises(StorageUnavailable, match="503"):
            S3Store(endpoint=f"127.0.0.1:{server.server_address[1]}", bucket="bucket", access_key="a",
                    secret_key="s", secure=False)
        assert time.monotonic() - t0 < 10
    finally:
        server.shutdown()
        server.server_close()
