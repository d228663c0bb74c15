"""The job's upload retry against a real MinIO that is stopped: backoff, give-up message, recovery.

The end-to-end outcome (runner, API, video status) is in tests/controller/test_storage_outage.py.
"""

from __future__ import annotations

import threading
import time

import pytest

from jobcontract.errors import StorageError, StorageUnavailable
from jobcontract.records import ExitCode
from jobcontract.storage import S3Store
from jobimage.entrypoint import UploadRetry, main
from tests.plugins.minio import MinioProcess


def s3(minio: MinioProcess, *, secret: str | None = None) -> S3Store:
    s = minio.server
    return S3Store(endpoint=s.endpoint, bucket="retry", access_key=s.access_key, secret_key=secret or s.secret_key,
                   secure=False, create_bucket=secret is None)


@pytest.mark.minio
def test_gives_up_after_the_tries_with_backoff_and_says_why(minio_process: MinioProcess) -> None:
    store = s3(minio_process)
    minio_process.stop()
    retry = UploadRetry(attempts=3, backoff_s=0.4, max_backoff_s=30)
    t0 = time.monotonic()
    with pytest.raises(StorageUnavailable) as info:
        retry.call("upload the video", lambda: store.put_bytes("v/video.mp4", b"x"), video_id="v")
    assert time.monotonic() - t0 >= 0.2 + 0.4  # at least half of each doubled wait (0.4, 0.8)
    message = str(info.value)
    assert message.startswith("could not upload the video after 3 tries over ")
    assert f"object storage at {minio_process.server.endpoint} is unreachable" in message
    assert "Connection refused" in message and "check that it is running" in message


@pytest.mark.minio
def test_storage_back_within_the_window_succeeds(minio_process: MinioProcess) -> None:
    store = s3(minio_process)
    minio_process.stop()
    restart = threading.Timer(1.0, minio_process.start)
    restart.start()
    try:
        UploadRetry(attempts=20, backoff_s=0.2, max_backoff_s=1.0).call(
            "upload the video", lambda: store.put_bytes("v/video.mp4", b"mp4"), video_id="v")
    finally:
        restart.join()
    assert store.get_bytes("v/video.mp4") == b"mp4"


@pytest.mark.minio
def test_refused_requests_are_not_retried(minio_process: MinioProcess) -> None:
    """Wrong credentials are not an outage: waiting would not help, so the first answer stands."""
    s3(minio_process)  # creates the bucket
    store = s3(minio_process, secret="not-the-secret")
    t0 = time.monotonic()
    with pytest.raises(StorageError) as info:
        UploadRetry(attempts=5, backoff_s=5.0).call("upload the video", lambda: store.put_bytes("v/x", b"x"),
                                                    video_id="v")
    assert not isinstance(info.value, StorageUnavailable) and "SignatureDoesNotMatch" in str(info.value)
    assert time.monotonic() - t0 < 5.0


@pytest.mark.parametrize(("name", "value", "fragment"), [
    ("T2V_UPLOAD_ATTEMPTS", "0", "out of range"),
    ("T2V_UPLOAD_ATTEMPTS", "three", "not an integer"),
    ("T2V_UPLOAD_BACKOFF_SECONDS", "-1", "out of range"),
    ("T2V_UPLOAD_MAX_BACKOFF_SECONDS", "soon", "not a number"),
], ids=["zero-attempts", "attempts-word", "negative-backoff", "max-backoff-word"])
def test_bad_retry_settings_stop_the_job_with_the_variable(name: str, value: str, fragment: str, tmp_path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    env = {"T2V_MANIFEST": "jobs/j/manifest.json", "T2V_STORAGE_URL": f"file://{tmp_path}",
           "T2V_MODEL_DIR": str(tmp_path), name: value}
    assert main(env) == ExitCode.BAD_SETUP
    err = capsys.readouterr().err
    assert f"{name}={value!r}" in err and fragment in err
