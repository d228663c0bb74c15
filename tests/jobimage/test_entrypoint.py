"""The job pod end to end on CPU with the tiny model: manifest in, MP4 + records out, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import pytest
import torch

from jobcontract.records import ExitCode, read_progress, read_result
from jobcontract.storage import LocalStore
from jobimage import entrypoint
from jobimage.entrypoint import main, plan
from tests.jobimage.conftest import job_env, make_item

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def decode(store: LocalStore, video_id: str) -> tuple[int, int, int, float, str]:
    """(frames, width, height, fps, pix_fmt) of a stored MP4, decoded with PyAV."""
    with av.open(str(store.root / "videos" / video_id / "video.mp4")) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames, stream.width, stream.height, float(stream.average_rate), stream.format.name


def test_good_and_bad_items_on_two_devices(store, model_dir):
    items = [make_item(video_id="ok-a"),
             make_item(video_id="bad", num_frames=8),
             make_item(video_id="ok-b", num_frames=13, height=64, width=80, fps=24, seed=3)]
    code = main(job_env(store, model_dir, items, devices="cpu,cpu"))
    assert code == ExitCode.BAD_ITEM  # the bad item is final; nothing retryable happened

    for vid, (frames, width, height, fps) in {"ok-a": (7, 96, 64, 30), "ok-b": (13, 80, 64, 24)}.items():
        assert decode(store, vid) == (frames, width, height, float(fps), "yuv420p")
        result = read_result(store, vid)
        assert result.status == "succeeded" and result.is_final
        assert (result.num_frames, result.width, result.height, result.fps) == (frames, width, height, fps)
        data = (store.root / "videos" / vid / "video.mp4").read_bytes()
        assert result.bytes == len(data) and len(result.sha256) == 64
        assert set(result.timings) >= {"load", "text_encode", "denoise", "decode", "encode", "upload"}
        assert result.gpu == "cpu" and result.seed in (7, 3)
        assert (store.root / "videos" / vid / "thumbnail.jpg").read_bytes()[:2] == b"\xff\xd8"
        assert read_progress(store, vid).phase == "uploading"

    bad = read_result(store, "bad")
    assert bad.status == "failed" and not bad.retryable and bad.error_code == "invalid_input"
    assert "num_frames: 8" in bad.error_message
    assert not store.exists("videos/bad/video.mp4")


def test_finished_items_are_skipped(store, model_dir):
    items = [make_item(video_id="once")]
    env = job_env(store, model_dir, items)
    assert main(env) == ExitCode.OK
    first = read_result(store, "once")
    assert main(env) == ExitCode.OK
    assert read_result(store, "once").finished_at == first.finished_at


def test_retryable_result_is_redone(store, model_dir):
    from jobcontract.records import Result, write_result

    item = make_item(video_id="again")
    write_result(store, item, Result(video_id="again", status="failed", retryable=True, error_code="cuda_oom"))
    assert main(job_env(store, model_dir, [item])) == ExitCode.OK
    assert read_result(store, "again").status == "succeeded"


def test_progress_reports_each_denoising_step(store, model_dir, monkeypatch):
    seen = []
    real = entrypoint.ItemRun.progress

    def spy(self, phase, step=0, total=0):
        seen.append((phase, step, total))
        return real(self, phase, step, total)

    monkeypatch.setattr(entrypoint.ItemRun, "progress", spy)
    monkeypatch.setattr(entrypoint, "PROGRESS_INTERVAL_S", 0.0)
    assert main(job_env(store, model_dir, [make_item(video_id="p", num_inference_steps=4)])) == ExitCode.OK
    phases = [p for p, _, _ in seen]
    assert phases[0] == "loading" and phases[-1] == "uploading"
    assert [s for p, s, _ in seen if p == "denoising"] == [0, 1, 2, 3, 4]
    assert {t for p, _, t in seen if p == "denoising"} == {4}
    assert phases.index("encoding_text") < phases.index("denoising") < phases.index("decoding") < phases.index("encoding")


def test_oom_on_one_item_is_retryable_and_others_finish(store, model_dir, monkeypatch):
    import jobimage.models.pipeline as gen

    real = gen.generate

    def flaky(item, workers, on_progress=None, **kw):
        if item.video_id == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(item, workers, on_progress, **kw)

    monkeypatch.setattr(gen, "generate", flaky)
    items = [make_item(video_id="oom"), make_item(video_id="fine"), make_item(video_id="bad", guidance_scale=99.0)]
    assert main(job_env(store, model_dir, items)) == ExitCode.RETRYABLE
    oom = read_result(store, "oom")
    assert oom.status == "failed" and oom.retryable and oom.error_code == "cuda_oom" and not oom.is_final
    assert read_result(store, "fine").status == "succeeded"
    assert read_result(store, "bad").is_final


def test_single_item_splits_guidance_over_two_devices(store, model_dir, monkeypatch):
    import jobimage.models.pipeline as gen

    used = []
    real = gen.generate

    def spy(item, workers, on_progress=None, **kw):
        used.append([str(w.device) for w in workers])
        return real(item, workers, on_progress, **kw)

    monkeypatch.setattr(gen, "generate", spy)
    assert main(job_env(store, model_dir, [make_item(video_id="solo")], devices="cpu,cpu")) == ExitCode.OK
    assert used == [["cpu", "cpu"]]
    assert decode(store, "solo")[0] == 7
    assert read_result(store, "solo").gpu == "2 x cpu"


@pytest.mark.parametrize(("n_items", "n_workers", "queued", "split"), [
    (1, 2, 0, True), (2, 2, 2, False), (3, 2, 2, True), (4, 2, 4, False), (3, 1, 3, False), (1, 1, 1, False),
    (5, 4, 4, True), (6, 4, 6, False),
], ids=lambda v: str(v))
def test_plan_queues_items_and_splits_a_leftover(n_items, n_workers, queued, split):
    items = [make_item(video_id=f"v{i}") for i in range(n_items)]
    q, s = plan(items, [f"w{i}" for i in range(n_workers)])
    assert q == items[:queued] and (s is items[-1] if split else s is None)


def test_three_items_on_two_devices_pair_then_split(store, model_dir, monkeypatch):
    import jobimage.models.pipeline as gen

    used = {}
    real = gen.generate

    def spy(item, workers, on_progress=None, **kw):
        used[item.video_id] = len(workers)
        return real(item, workers, on_progress, **kw)

    monkeypatch.setattr(gen, "generate", spy)
    items = [make_item(video_id=v, num_inference_steps=2) for v in ("a", "b", "c")]
    assert main(job_env(store, model_dir, items, devices="cpu,cpu")) == ExitCode.OK
    assert used == {"a": 1, "b": 1, "c": 2}


@pytest.mark.parametrize(("env_change", "stderr_has"), [
    ({"T2V_MANIFEST": ""}, "T2V_MANIFEST"),
    ({"JOB_COMPLETION_INDEX": "x"}, "JOB_COMPLETION_INDEX"),
    ({"T2V_MANIFEST": "jobs/none/manifest.json"}, "manifest not found"),
], ids=["no-manifest-env", "bad-index", "manifest-missing"])
def test_setup_errors_exit_bad_setup(store, model_dir, capsys, env_change, stderr_has):
    env = job_env(store, model_dir, [make_item()])
    env.update(env_change)
    assert main(env) == ExitCode.BAD_SETUP
    assert stderr_has in capsys.readouterr().err


def test_missing_model_folder_names_path_and_part(store, tmp_path, capsys):
    empty = tmp_path / "models"
    (empty / "tiny" / "transformer").mkdir(parents=True)
    assert main(job_env(store, empty, [make_item()])) == ExitCode.BAD_SETUP
    err = capsys.readouterr().err
    assert str(empty / "tiny") in err and "READY" in err and "vae/" in err and "t2v model sync" in err


def test_storage_unreachable_is_retryable(monkeypatch, model_dir):
    monkeypatch.setenv("T2V_S3_ACCESS_KEY", "k")
    monkeypatch.setenv("T2V_S3_SECRET_KEY", "s")
    env = {"T2V_MANIFEST": "jobs/j/manifest.json", "T2V_STORAGE_URL": "s3://127.0.0.1:9/bucket?secure=false",
           "T2V_MODEL_DIR": str(model_dir)}
    assert main(env) == ExitCode.RETRYABLE


def test_python_dash_m_jobimage(store, model_dir):
    env = {**os.environ, **job_env(store, model_dir, [make_item(video_id="cli")])}
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "jobimage"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '"msg": "job finished"' in proc.stderr
    assert read_result(store, "cli").status == "succeeded"


@pytest.mark.parametrize(("raw", "mode"), [(None, "auto"), ("OFF", "off"), (" on ", "on")])
def test_compile_setting(raw, mode, tmp_path):
    env = {"T2V_MANIFEST": "jobs/j/manifest.json", "T2V_STORAGE_URL": f"file://{tmp_path}", "T2V_MODEL_DIR": str(tmp_path)}
    if raw is not None:
        env["T2V_COMPILE"] = raw
    assert entrypoint.Settings.from_env(env).compile_mode == mode


def test_bad_compile_setting_stops_the_job_with_the_variable(tmp_path, capsys):
    env = {"T2V_MANIFEST": "jobs/j/manifest.json", "T2V_STORAGE_URL": f"file://{tmp_path}",
           "T2V_MODEL_DIR": str(tmp_path), "T2V_COMPILE": "fast"}
    assert main(env) == ExitCode.BAD_SETUP
    assert "T2V_COMPILE='fast' is not one of auto, on, off" in capsys.readouterr().err
