"""Object storage behind one small interface: a local folder or S3/MinIO.

Every part of t2v (API, runner, controller, job pods) talks to storage only
through `ObjectStore`, so the job contract is the same on a laptop and on a
cluster.
"""

from __future__ import annotations

import io
import os
import tempfile
import urllib.parse
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from jobcontract.errors import ObjectNotFound, StorageError, StorageUnavailable

CHUNK = 1024 * 1024


class ObjectStore(Protocol):
    """What every storage backend offers."""

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        """Store `data` under `key`, atomically (readers see all or nothing)."""

    def put_file(self, key: str, path: Path, *, content_type: str = "application/octet-stream") -> None:
        """Store the file at `path` under `key`, atomically."""

    def get_bytes(self, key: str) -> bytes:
        """Return the whole object; `ObjectNotFound` if absent."""

    def exists(self, key: str) -> bool:
        """Whether `key` holds an object."""

    def size(self, key: str) -> int:
        """Object size in bytes; `ObjectNotFound` if absent."""

    def iter_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield bytes [start, end] (inclusive end, like HTTP Range) in chunks."""

    def delete(self, key: str) -> None:
        """Remove `key`; absent keys are fine."""

    def list(self, prefix: str) -> list[str]:
        """Keys under `prefix`, sorted."""

    def presigned_url(self, key: str, *, expires: timedelta, public_url: str | None = None,
                      response_headers: dict[str, str] | None = None) -> str | None:
        """A URL a client can GET directly until `expires` (Range requests included), or None when
        the backend has none. `public_url` (scheme://host[:port]) is where clients reach the store
        when that differs from where we do; `response_headers` override the response's Content-Type
        and Content-Disposition."""


def check_key(key: str) -> str:
    """Refuse keys that could escape the store (absolute, `..`, empty parts)."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in key:
        raise StorageError(f"invalid object key {key!r}: use relative 'a/b/c' keys without '..'")
    return key


class LocalStore:
    """A folder on disk; writes go to a temp file then `os.replace` (atomic)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        self._write(key, io.BytesIO(data))

    def put_file(self, key: str, path: Path, *, content_type: str = "application/octet-stream") -> None:
        with open(path, "rb") as src:
            self._write(key, src)

    def _write(self, key: str, src: io.IOBase) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := src.read(CHUNK):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as e:
            raise ObjectNotFound(key) from e

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError as e:
            raise ObjectNotFound(key) from e

    def iter_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        path = self._path(key)
        try:
            f = open(path, "rb")
        except FileNotFoundError as e:
            raise ObjectNotFound(key) from e
        return _read_range(f, start, end)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix if prefix else self.root
        if not base.exists():
            return []
        return sorted(
            str(p.relative_to(self.root))
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        )

    def presigned_url(self, key: str, *, expires: timedelta, public_url: str | None = None,
                      response_headers: dict[str, str] | None = None) -> str | None:
        return None


def _read_range(f: io.BufferedReader, start: int, end: int | None) -> Iterator[bytes]:
    with f:
        f.seek(start)
        left = None if end is None else end - start + 1
        while left is None or left > 0:
            chunk = f.read(CHUNK if left is None else min(CHUNK, left))
            if not chunk:
                break
            if left is not None:
                left -= len(chunk)
            yield chunk


class S3Store:
    """An S3 bucket through the `minio` client (MinIO, AWS S3, Ceph RGW...)."""

    def __init__(self, *, endpoint: str, bucket: str, access_key: str, secret_key: str,
                 secure: bool = True, region: str | None = None, create_bucket: bool = True) -> None:
        from minio import Minio
        from urllib3 import PoolManager, Retry, Timeout

        # Short timeouts and few retries: a dead endpoint must surface as
        # StorageUnavailable in seconds, not hang a request or a pod. Retry-After is ignored:
        # a starting MinIO answers 503 with `Retry-After: 60` for a fraction of a second, and
        # honouring it stalled every caller of that moment for a minute.
        http = PoolManager(timeout=Timeout(connect=5, read=60), maxsize=16,
                           retries=Retry(total=3, backoff_factor=0.3, status_forcelist=(500, 502, 503, 504),
                                         respect_retry_after_header=False))
        self.bucket = bucket
        self.endpoint = endpoint
        self.region = region
        self._public_clients: dict[str, object] = {}
        self.client = Minio(endpoint, access_key=access_key, secret_key=secret_key,
                            secure=secure, region=region, http_client=http)
        if create_bucket:
            self._guard(lambda: self.client.bucket_exists(bucket) or self.client.make_bucket(bucket))

    def __repr__(self) -> str:
        return f"S3Store(bucket={self.bucket!r})"

    def _guard(self, fn):
        from minio.error import S3Error
        from urllib3.exceptions import HTTPError

        try:
            return fn()
        except S3Error as e:
            if e.code in ("NoSuchKey", "NoSuchObject"):
                raise ObjectNotFound(e.resource or "") from e
            raise StorageError(f"S3 error {e.code}: {e.message}") from e
        except (HTTPError, OSError) as e:
            raise StorageUnavailable(f"object storage at {self.endpoint} is unreachable ({_why(e)}); "
                                     "check that it is running and reachable from here") from e
        except ValueError as e:  # the client's own argument checks, e.g. a bucket name S3 refuses
            raise StorageError(f"S3 refused the request: {e}") from e

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        self._guard(lambda: self.client.put_object(self.bucket, check_key(key), io.BytesIO(data), len(data),
                                                   content_type=content_type))

    def put_file(self, key: str, path: Path, *, content_type: str = "application/octet-stream") -> None:
        self._guard(lambda: self.client.fput_object(self.bucket, check_key(key), str(path),
                                                    content_type=content_type))

    def get_bytes(self, key: str) -> bytes:
        def get() -> bytes:
            resp = self.client.get_object(self.bucket, check_key(key))
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()
        return self._guard(get)

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
            return True
        except ObjectNotFound:
            return False

    def size(self, key: str) -> int:
        return self._guard(lambda: self.client.stat_object(self.bucket, check_key(key)).size)

    def iter_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        length = 0 if end is None else end - start + 1
        resp = self._guard(lambda: self.client.get_object(self.bucket, check_key(key), offset=start, length=length))

        def stream() -> Iterator[bytes]:
            try:
                yield from resp.stream(CHUNK)
            finally:
                resp.close()
                resp.release_conn()
        return stream()

    def delete(self, key: str) -> None:
        self._guard(lambda: self.client.remove_object(self.bucket, check_key(key)))

    def list(self, prefix: str) -> list[str]:
        return sorted(self._guard(lambda: [o.object_name for o in
                                           self.client.list_objects(self.bucket, prefix=prefix, recursive=True)]))

    def presigned_url(self, key: str, *, expires: timedelta, public_url: str | None = None,
                      response_headers: dict[str, str] | None = None) -> str | None:
        client = self._public_client(public_url) if public_url else self.client
        return self._guard(lambda: client.presigned_get_object(self.bucket, check_key(key), expires=expires,
                                                               response_headers=response_headers))

    def _public_client(self, public_url: str):
        """A client for the public endpoint, only for signing: the signature covers the host, and
        signing makes no request when the region is known (asked once, of our own endpoint)."""
        from minio import Minio

        if public_url not in self._public_clients:
            parsed = urllib.parse.urlparse(public_url)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise StorageError(f"public storage URL {public_url!r} must look like https://host[:port]")
            region = self.region or self._guard(lambda: self.client._get_region(self.bucket))
            self._public_clients[public_url] = Minio(parsed.netloc, credentials=self.client._provider,
                                                     secure=parsed.scheme == "https", region=region)
        return self._public_clients[public_url]


def _why(e: Exception) -> str:
    """The useful part of a urllib3 error: 'Connection refused', not the pool and URL around it."""
    text = str(getattr(e, "reason", None) or e)
    if text.startswith(("HTTPConnection(", "HTTPSConnection(")) and "): " in text:
        text = text.split("): ", 1)[1]
    return text


def _endpoint_from_env(url: str, bucket: str, query: dict) -> tuple[str, urllib.parse.ParseResult, dict]:
    """For `s3://bucket`: the endpoint of AWS_ENDPOINT_URL, its scheme deciding `secure` unless the URL says."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    ep = urllib.parse.urlparse(endpoint)
    if ep.scheme not in ("http", "https") or not ep.hostname:
        raise StorageError(f"storage URL {url!r} names only a bucket, and AWS_ENDPOINT_URL={endpoint!r} is not "
                           "an http(s)://host[:port] endpoint: set it, or use s3://host:port/bucket")
    query = {"secure": ["true" if ep.scheme == "https" else "false"], **query}
    return bucket, ep, query


def open_store(url: str) -> ObjectStore:
    """Open a store from a URL: `file:///abs/path`, `file://./rel/path`, a bare path,
    `s3://host:port/bucket?secure=false&region=...`, or `s3://bucket` with the endpoint in
    `AWS_ENDPOINT_URL` (`http://` means secure=false), with credentials from the environment
    (`T2V_S3_ACCESS_KEY`/`T2V_S3_SECRET_KEY`, falling back to `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`).
    """
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("", "file"):
        path = url[len("file://"):] if parsed.scheme == "file" else url
        if not path:
            raise StorageError(f"storage URL {url!r} has no path: use file:///abs/path or file://./rel/path")
        return LocalStore(Path(path))
    if parsed.scheme == "s3":
        query = urllib.parse.parse_qs(parsed.query)
        bucket = parsed.path.strip("/")
        if not bucket and parsed.hostname:
            # `s3://bucket`: the endpoint comes from AWS_ENDPOINT_URL, as for the AWS tools.
            bucket, parsed, query = _endpoint_from_env(url, parsed.netloc, query)
        if not parsed.hostname or not bucket or "/" in bucket:
            raise StorageError(f"storage URL {url!r} must look like s3://host[:port]/bucket "
                               "(or s3://bucket with AWS_ENDPOINT_URL set)")
        access = os.environ.get("T2V_S3_ACCESS_KEY") or os.environ.get("AWS_ACCESS_KEY_ID")
        secret = os.environ.get("T2V_S3_SECRET_KEY") or os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not access or not secret:
            raise StorageError("S3 storage needs T2V_S3_ACCESS_KEY and T2V_S3_SECRET_KEY in the environment")
        secure = query.get("secure", ["true"])[0].lower() not in ("0", "false", "no")
        endpoint = parsed.hostname + (f":{parsed.port}" if parsed.port else "")
        return S3Store(endpoint=endpoint, bucket=bucket, access_key=access, secret_key=secret,
                       secure=secure, region=query.get("region", [None])[0])
    raise StorageError(f"unknown storage URL scheme {parsed.scheme!r} in {url!r}: use file:// or s3://")
