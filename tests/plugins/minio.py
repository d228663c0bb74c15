"""A real MinIO server for the storage tests, built from source by scripts/testcluster.

The session starts one server on a free loopback port with a throw-away data folder;
nothing global (environment, settings) is changed, tests take what they need from it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from scripts.testcluster_lib import build
from tests.support.net import free_port


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


def _ready(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{endpoint}/minio/health/ready", timeout=1) as r:  # noqa: S310
            return r.status == 200
    except Exception:  # noqa: BLE001 - not up yet
        return False


@pytest.fixture(scope="session")
def minio_server() -> Iterator[MinioServer]:
    """Start MinIO once per session (building it first if the cache lacks it); stop it at the end."""
    binary = build.binary("minio")
    if not binary.is_file():
        build.build(["minio"])
    tmp = tempfile.mkdtemp(prefix="t2v-minio-")
    port, console = free_port(), free_port()
    endpoint = f"127.0.0.1:{port}"
    server = MinioServer(endpoint=endpoint, access_key="t2v-test-access", secret_key="t2v-test-secret-key",
                         data_dir=os.path.join(tmp, "data"), log_path=os.path.join(tmp, "minio.log"))
    env = {**os.environ, "MINIO_ROOT_USER": server.access_key, "MINIO_ROOT_PASSWORD": server.secret_key,
           "MINIO_BROWSER": "off", "MINIO_UPDATE": "off", "HOME": tmp}
    with open(server.log_path, "ab") as log:
        proc = subprocess.Popen(
            [str(binary), "server", "--quiet", "--address", endpoint, "--console-address", f"127.0.0.1:{console}",
             server.data_dir],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not _ready(endpoint):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"MinIO did not start on {endpoint}; see {server.log_path}")
            time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
