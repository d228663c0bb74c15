"""A real MinIO server for the storage tests, built from source by scripts/testcluster.

The session starts one server on a free loopback port with a throw-away data folder;
nothing global (environment, settings) is changed, tests take what they need from it.
Outage tests get a server of their own (`minio_process`) that they may stop and start
again on the same port and data folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.testcluster_lib import build
from scripts.harness.net import free_port
from scripts.harness.procs import stop


@dataclass(frozen=True)
class MinioServer:
    """A running throw-away MinIO server."""

    endpoint: str  # "127.0.0.1:PORT"
    access_key: str
    secret_key: str
    data_dir: str
    log_path: str

    def url(self, bucket: str) -> str:
        """Storage URL of one bucket on this server, in t2v's s3:// form."""
        return f"s3://{self.endpoint}/{bucket}?secure=false"


def _status(url: str) -> int | None:
    """HTTP status of a GET, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 - loopback test server
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception:  # noqa: BLE001 - not up yet
        return None


def _ready(endpoint: str) -> bool:
    """Ready to serve S3: the health probe says so and the S3 API no longer answers 503.

    Right after the probe turns 200, MinIO may still answer S3 requests with 503
    XMinioServerNotInitialized for a moment; an anonymous request gets 403 once it is up.
    """
    return (_status(f"http://{endpoint}/minio/health/ready") == 200
            and _status(f"http://{endpoint}/") not in (None, 503))


def _binary() -> Path:
    binary = build.binary("minio")
    if not binary.is_file():
        build.build(["minio"])
    return binary


class MinioProcess:
    """One MinIO process that can be stopped and started again on the same port and data."""

    def __init__(self, binary: Path, root: str) -> None:
        self.binary, self.root = binary, root
        port, self.console_port = free_port(), free_port()
        self.server = MinioServer(endpoint=f"127.0.0.1:{port}", access_key="t2v-test-access",
                                  secret_key="t2v-test-secret-key", data_dir=os.path.join(root, "data"),
                                  log_path=os.path.join(root, "minio.log"))
        self.proc: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until it answers its readiness probe."""
        assert not self.running, "MinIO is already running"
        s = self.server
        env = {**os.environ, "MINIO_ROOT_USER": s.access_key, "MINIO_ROOT_PASSWORD": s.secret_key,
               "MINIO_BROWSER": "off", "MINIO_UPDATE": "off", "HOME": self.root}
        with open(s.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), "server", "--quiet", "--address", s.endpoint,
                 "--console-address", f"127.0.0.1:{self.console_port}", s.data_dir],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not _ready(s.endpoint):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = Path(s.log_path).read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"MinIO did not start on {s.endpoint}; log tail:\n{tail}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server (SIGTERM, SIGKILL after 15 s); its port refuses connections afterwards."""
        if self.proc is None:
            return
        stop(self.proc, timeout=15)
        self.proc = None


@pytest.fixture(scope="session")
def minio_server() -> Iterator[MinioServer]:
    """Start MinIO once per session (building it first if the cache lacks it); stop it at the end."""
    tmp = tempfile.mkdtemp(prefix="t2v-minio-")
    minio = MinioProcess(_binary(), tmp)
    try:
        minio.start()
        yield minio.server
    finally:
        minio.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def minio_process() -> Iterator[MinioProcess]:
    """A started MinIO of this test's own, which the test may stop and start; stopped at the end."""
    tmp = tempfile.mkdtemp(prefix="t2v-minio-")
    minio = MinioProcess(_binary(), tmp)
    try:
        minio.start()
        yield minio
    finally:
        minio.stop()
        shutil.rmtree(tmp, ignore_errors=True)
