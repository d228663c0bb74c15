"""MinIO stopped while a video uploads, end to end: API, local runner, the real jobimage (tiny model on
CPU) and a real MinIO process. The job retries the upload with backoff; if storage stays down the video
fails with a reason that names storage (never `completed`), and if storage comes back in time it completes.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from controller.local.runner import LocalRunner
from controller.reconciler import DISPATCH_PAUSE_AFTER_STORAGE_ERROR_S
from jobcontract.records import ExitCode, video_keys
from tests.controller.conftest import drive
from tests.controller.test_local_runner import decode, submit
from tests.plugins.minio import MinioProcess
from scripts.harness.server import shared_model_dir
from core.settings import Settings

pytestmark = [pytest.mark.minio, pytest.mark.slow]

# 60 denoising steps keep the job busy for seconds after its first progress record: MinIO is stopped
# then, so the outage is certain to cover the upload that follows.
STEPS = 60


@pytest.fixture
def run_settings(tmp_path: Path, minio_process: MinioProcess, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The runner fixtures' settings, with object storage on this test's own MinIO and two attempts."""
    monkeypatch.setenv("T2V_S3_ACCESS_KEY", minio_process.server.access_key)  # the job processes inherit these
    monkeypatch.setenv("T2V_S3_SECRET_KEY", minio_process.server.secret_key)
    return Settings(data_dir=tmp_path / "data", model_dir=shared_model_dir(), runner_poll_seconds=0.1,
                    storage_url=minio_process.server.url("t2v-outage"), max_attempts=2)


def job_log(runner: LocalRunner, job: str) -> list[dict]:
    """The JSON log lines of one job process (other output, e.g. library warnings, left out)."""
    lines = []
    for line in (runner.state_dir / "logs" / f"{job}.log").read_text(errors="replace").splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def jobs_started(api: TestClient, vid: str) -> list[str]:
    """Names of the jobs a video was started in, in order (from its status log)."""
    events = api.get(f"/v1/videos/{vid}/events").json()["data"]
    return [e["reason"].removeprefix("started in job ") for e in events if e["to"] == "in_progress"]


def stop_minio_while_denoising(runner: LocalRunner, api: TestClient, vid: str, minio: MinioProcess) -> None:
    """Let the job reach its denoising loop (its progress goes through MinIO), then stop MinIO."""
    drive(runner, api, [vid], until=lambda vs: vs[0]["status"] == "in_progress" and vs[0]["progress"] > 2)
    minio.stop()


def retries(log: list[dict], what: str) -> list[dict]:
    return [x for x in log if x["msg"] == "storage unavailable, retrying" and x["what"] == what]


def ts(line: dict) -> float:
    return datetime.fromisoformat(line["ts"]).timestamp()


def assert_backoff(tries: list[dict], *, base: float, cap: float) -> None:
    """Each wait is half to all of the doubled backoff, and the next try came no earlier than the wait."""
    for n, line in enumerate(tries, start=1):
        nominal = min(cap, base * 2 ** (n - 1))
        assert line["tries"] == n and nominal / 2 <= line["delay_s"] <= nominal, tries
    for a, b in zip(tries, tries[1:]):
        assert ts(b) - ts(a) >= a["delay_s"] - 0.01, (a, b)


def test_storage_down_through_every_attempt_fails_with_the_reason(api: TestClient, make_runner,
                                                                  minio_process: MinioProcess,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T2V_UPLOAD_ATTEMPTS", "3")
    monkeypatch.setenv("T2V_UPLOAD_BACKOFF_SECONDS", "0.5")
    runner = make_runner()
    vid = submit(api, num_inference_steps=STEPS)

    # Attempt 1: MinIO goes down before the upload and stays down.
    stop_minio_while_denoising(runner, api, vid, minio_process)
    after_first = drive(runner, api, [vid], until=lambda vs: vs[0]["status"] != "in_progress")[0]
    assert after_first["status"] == "queued", after_first  # attempt 1 of 2 spent; it may run again

    # While storage is down no job can even get its manifest: the video waits and keeps its attempts.
    quiet_until = time.monotonic() + 2 * DISPATCH_PAUSE_AFTER_STORAGE_ERROR_S
    waiting = drive(runner, api, [vid], until=lambda vs: time.monotonic() > quiet_until)[0]
    assert waiting["status"] == "queued" and not runner.jobs and len(jobs_started(api, vid)) == 1

    # Attempt 2: storage is back when it starts, down again before its upload.
    minio_process.start()
    stop_minio_while_denoising(runner, api, vid, minio_process)
    final = drive(runner, api, [vid])[0]

    # What the user sees: failed, with the storage problem as the reason; never completed.
    assert final["status"] == "failed", final
    error = final["error"]
    assert error["code"] == "storage_unavailable", error
    assert f"object storage at {minio_process.server.endpoint} is unreachable" in error["message"], error
    assert f"exited with code {int(ExitCode.RETRYABLE)}" in error["message"], error
    assert error["message"].endswith("(after 2 attempts)"), error
    assert final["bytes"] is None and final["sha256"] is None
    events = api.get(f"/v1/videos/{vid}/events").json()["data"]
    assert [e["to"] for e in events] == ["queued", "in_progress", "queued", "in_progress", "failed"]
    assert "unreachable" in events[2]["reason"] and "queued again" in events[2]["reason"]

    # Each job retried its upload with backoff, then exited "retryable" with the reason in its log.
    jobs = jobs_started(api, vid)
    assert len(jobs) == 2
    for job in jobs:
        log = job_log(runner, job)
        tries = retries(log, "upload the video")
        assert len(tries) == 2, log  # 3 tries: 2 failures with a wait after each, then it gives up
        assert_backoff(tries, base=0.5, cap=30.0)
        failed = [x for x in log if x["msg"] == "item failed"]
        assert len(failed) == 1 and failed[0]["error_code"] == "storage_unavailable", log
        assert failed[0]["error"].startswith("could not upload the video after 3 tries over "), failed
        assert [x["exit_code"] for x in log if x["msg"] == "job finished"] == [int(ExitCode.RETRYABLE)]
        assert not [x for x in log if x["msg"] == "item done"]

    # Storage back: it holds no video and no result for it, and the API serves no content.
    minio_process.start()
    store = api.app.state.store
    keys = video_keys(vid)
    assert not store.exists(keys["video"]) and not store.exists(keys["result"])
    content = api.get(f"/v1/videos/{vid}/content")
    assert content.status_code == 409 and content.json()["error"]["code"] == "content_not_ready"
    assert api.get("/v1/videos", params={"status": "completed"}).json()["data"] == []


def test_storage_back_within_the_retry_window_completes(api: TestClient, make_runner, minio_process: MinioProcess,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Ten tries with waits of 0.5, 1, 2, 2, ... s: a window of well over 10 s for a restart that takes ~1 s.
    monkeypatch.setenv("T2V_UPLOAD_ATTEMPTS", "10")
    monkeypatch.setenv("T2V_UPLOAD_BACKOFF_SECONDS", "0.5")
    monkeypatch.setenv("T2V_UPLOAD_MAX_BACKOFF_SECONDS", "2")
    runner = make_runner()
    vid = submit(api, num_inference_steps=STEPS)
    stop_minio_while_denoising(runner, api, vid, minio_process)
    (job,) = jobs_started(api, vid)

    # Bring MinIO back once the job has failed to upload and is waiting to try again.
    drive(runner, api, [vid], until=lambda vs: bool(retries(job_log(runner, job), "upload the video")))
    minio_process.start()
    done = drive(runner, api, [vid])[0]

    assert done["status"] == "completed", done
    events = api.get(f"/v1/videos/{vid}/events").json()["data"]
    assert [e["to"] for e in events] == ["queued", "in_progress", "completed"]  # one attempt, no requeue
    content = api.get(f"/v1/videos/{vid}/content")
    assert content.status_code == 200 and content.headers["content-type"] == "video/mp4"
    assert decode(content.content) == (13, 256, 144, 30.0)
    assert done["bytes"] == len(content.content)
    assert done["sha256"] == hashlib.sha256(content.content).hexdigest()
    thumb = api.get(f"/v1/videos/{vid}/content", params={"variant": "thumbnail"})
    assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"

    log = job_log(runner, job)
    tries = retries(log, "upload the video")
    assert 1 <= len(tries) < 10, log
    assert_backoff(tries, base=0.5, cap=2.0)
    assert [x["msg"] for x in log].index("item done") > log.index(tries[-1])
    assert [x["exit_code"] for x in log if x["msg"] == "job finished"] == [int(ExitCode.OK)]
