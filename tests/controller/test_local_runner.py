"""The local runner end to end with the real jobimage and the tiny model (CPU): MP4s decoded,
failures recorded, cancel, and recovery when any process dies at any moment."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import time

import av
import pytest
from fastapi.testclient import TestClient

from controller.local.process import lock_held
from controller.local.runner import LocalRunner
from jobcontract.records import ExitCode, video_keys
from tests.controller.conftest import drive


# Seconds of denoising (~20 ms a step here): progress is written at most once a second, so a short video's
# first progress past the start can be its last step, and a test that acts "while it runs" would race its end.
LONG_DENOISE = {"size": "432x240", "num_frames": 25, "num_inference_steps": 200}


def submit(api: TestClient, **body) -> str:
    r = api.post("/v1/videos", json={"prompt": "a lighthouse at dusk", "size": "256x144", "num_frames": 13,
                                      "num_inference_steps": 2, **body})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def decode(data: bytes) -> tuple[int, int, int, float]:
    """Frames, width, height and fps of an MP4, by decoding every frame."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames, stream.codec_context.width, stream.codec_context.height, float(stream.average_rate)


@pytest.mark.slow
def test_videos_complete_as_decodable_mp4s(api: TestClient, make_runner) -> None:
    runner = make_runner()
    a = submit(api, seed=5)
    b = submit(api, num_frames=31, size="848x480", num_inference_steps=3)
    done = drive(runner, api, [a, b])
    for video, (frames, w, h) in zip(done, [(13, 256, 144), (31, 848, 480)], strict=True):
        assert video["status"] == "completed", video
        assert video["progress"] == 100 and video["started_at"] and video["completed_at"]
        content = api.get(f"/v1/videos/{video['id']}/content")
        assert content.status_code == 200 and content.headers["content-type"] == "video/mp4"
        assert decode(content.content) == (frames, w, h, 30.0)
        assert video["bytes"] == len(content.content)
        assert video["sha256"] == hashlib.sha256(content.content).hexdigest()
        assert set(video["timings"]) >= {"load", "denoise", "decode", "encode", "upload"}
        thumb = api.get(f"/v1/videos/{video['id']}/content", params={"variant": "thumbnail"})
        assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"
    events = api.get(f"/v1/videos/{a}/events").json()["data"]
    assert [e["to"] for e in events] == ["queued", "in_progress", "completed"]


@pytest.mark.slow
def test_range_requests_return_exact_slices(api: TestClient, make_runner) -> None:
    vid = submit(api)
    drive(make_runner(), api, [vid])
    whole = api.get(f"/v1/videos/{vid}/content").content
    part = api.get(f"/v1/videos/{vid}/content", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole)}"
    tail = api.get(f"/v1/videos/{vid}/content", headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == whole[-10:]
    bad = api.get(f"/v1/videos/{vid}/content", headers={"Range": f"bytes={len(whole) + 5}-"})
    assert bad.status_code == 416 and bad.json()["error"]["param"] == "Range"
    assert bad.headers["content-range"] == f"bytes */{len(whole)}"
    for other in ("null", "bytes=1-2,5-6", "items=0-1", "bytes=-"):  # not one byte range: ignored (RFC 9110)
        r = api.get(f"/v1/videos/{vid}/content", headers={"Range": other})
        assert r.status_code == 200 and r.content == whole and "content-range" not in r.headers, other


@pytest.mark.slow
def test_same_seed_same_video(api: TestClient, make_runner) -> None:
    runner = make_runner()
    ids = [submit(api, seed=11), submit(api, seed=11), submit(api, seed=12)]
    done = drive(runner, api, ids)
    shas = [v["sha256"] for v in done]
    assert shas[0] == shas[1] != shas[2]


@pytest.mark.slow
def test_a_bad_item_fails_alone_with_its_reason(api: TestClient, make_runner, monkeypatch) -> None:
    """A prompt longer than Mochi's 256 T5 tokens is refused at submission (400 naming the row and `prompt`);
    where the API cannot count (no tokenizer file here, as in cluster mode) it fails alone in the pod."""
    long_prompt = " ".join(["fox"] * 450)  # 1,799 characters, well over 256 tokens
    videos = [
        {"prompt": "fine one", "size": "256x144", "num_frames": 7, "num_inference_steps": 2},
        {"prompt": long_prompt, "size": "256x144", "num_frames": 7, "num_inference_steps": 2},
        {"prompt": "fine two", "size": "256x144", "num_frames": 7, "num_inference_steps": 2}]
    refused = api.post("/v1/batches", json={"videos": videos})
    assert refused.status_code == 400, refused.text
    assert [(r["row"], r["param"]) for r in refused.json()["error"]["rows"]] == [(2, "prompt")]
    assert "tokens" in refused.json()["error"]["rows"][0]["message"]
    monkeypatch.setattr(api.app.state, "tokens", None)
    batch = api.post("/v1/batches", json={"videos": [
        {"prompt": "fine one", "size": "256x144", "num_frames": 7, "num_inference_steps": 2},
        {"prompt": long_prompt, "size": "256x144", "num_frames": 7, "num_inference_steps": 2},
        {"prompt": "fine two", "size": "256x144", "num_frames": 7, "num_inference_steps": 2}]}).json()
    ids = [v["id"] for v in api.get("/v1/videos", params={"batch_id": batch["id"], "order": "asc"}).json()["data"]]
    done = drive(make_runner(), api, ids)
    assert [v["status"] for v in done] == ["completed", "failed", "completed"]
    assert done[1]["error"]["code"] and "token" in done[1]["error"]["message"].lower()
    counts = api.get(f"/v1/batches/{batch['id']}").json()["counts"]
    assert (counts["completed"], counts["failed"]) == (2, 1)


def _running_job(runner: LocalRunner):
    assert len(runner.jobs) == 1
    return next(iter(runner.jobs.values()))


@pytest.mark.slow
def test_killed_job_process_is_retried_and_completes(api: TestClient, make_runner) -> None:
    runner = make_runner()
    vid = submit(api, **LONG_DENOISE)
    drive(runner, api, [vid], until=lambda vs: vs[0]["progress"] > 2)
    job = _running_job(runner)
    os.killpg(job.proc.pid, signal.SIGSTOP)  # frozen first, so what it wrote before the kill is known
    assert not api.app.state.store.exists(video_keys(vid)["result"]), "finished before the kill: test too short"
    os.killpg(job.proc.pid, signal.SIGKILL)
    done = drive(runner, api, [vid])[0]
    assert done["status"] == "completed"
    reasons = [e["reason"] for e in api.get(f"/v1/videos/{vid}/events").json()["data"]]
    assert any("queued again" in r for r in reasons), reasons


@pytest.mark.slow
def test_runner_crash_adopts_the_running_job_instead_of_starting_another(api: TestClient, make_runner) -> None:
    first = make_runner()
    vid = submit(api, **LONG_DENOISE)
    drive(first, api, [vid], until=lambda vs: vs[0]["status"] == "in_progress")
    job = _running_job(first)
    first.jobs.clear()  # the server process "dies": it forgets its jobs; the job process lives on
    second = make_runner()
    second.reconcile_once()
    assert list(second.jobs) == [job.name] and second.jobs[job.name].proc is None  # adopted, not restarted
    done = drive(second, api, [vid])[0]
    assert done["status"] == "completed"
    starts = [e for e in api.get(f"/v1/videos/{vid}/events").json()["data"] if e["to"] == "in_progress"]
    assert len(starts) == 1, "the video was started twice"
    job.proc.wait(timeout=30)


@pytest.mark.slow
def test_claimed_but_never_started_video_is_recovered(api: TestClient, make_runner, run_settings) -> None:
    """The server died between claiming a row and starting its process."""
    from core import crud, queries
    from core.db import session_for

    vid = submit(api)
    with session_for(run_settings.db_url) as s:
        assert crud.claim_unit(s, videos=[queries.get_video(s, video_id=vid, tenant=None)], job_name="local-crashed-1",
                               now=time.time())
        s.commit()
    done = drive(make_runner(), api, [vid])[0]
    assert done["status"] == "completed"


@pytest.mark.slow
def test_cancel_stops_the_process_and_removes_files(api: TestClient, make_runner) -> None:
    runner = make_runner()
    vid = submit(api, **LONG_DENOISE)
    drive(runner, api, [vid], until=lambda vs: vs[0]["progress"] > 2)
    job = _running_job(runner)
    assert api.post(f"/v1/videos/{vid}/cancel").json()["status"] == "cancelled"
    drive(runner, api, [vid], until=lambda vs: not runner.jobs)
    assert job.proc.poll() is not None
    assert not lock_held(runner._lock(job.name))
    assert api.app.state.store.list(f"videos/{vid}") == []
    assert api.get(f"/v1/videos/{vid}").json()["status"] == "cancelled"


@pytest.mark.slow
def test_stopping_the_runner_checkpoints_the_video_and_the_next_runner_resumes_it(api: TestClient,
                                                                                   make_runner) -> None:
    first = make_runner()
    vid = submit(api, **LONG_DENOISE)
    drive(first, api, [vid], until=lambda vs: vs[0]["progress"] > 2)  # denoising has begun
    job = _running_job(first)
    first.stop()
    assert job.proc.returncode == ExitCode.STOPPED  # the job image's answer to SIGTERM, not SIGKILL's -9
    store = api.app.state.store
    assert store.exists(video_keys(vid)["checkpoint"])
    done = drive(make_runner(), api, [vid])[0]
    assert done["status"] == "completed" and done["timings"]["resumed_at_step"] > 0, done
    assert not store.exists(video_keys(vid)["checkpoint"])
