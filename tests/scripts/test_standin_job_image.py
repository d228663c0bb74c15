"""The kwok stand-in's job-image half without a cluster: it runs `jobimage.entrypoint.run` with its
generator, so outputs, checks, checkpoints and exit codes are the pod's own."""

from __future__ import annotations

import threading
from pathlib import Path

from jobcontract.records import ExitCode, Manifest, read_result, write_manifest
from jobcontract.storage import LocalStore
from scripts.harness.standin import CONTAINER, PodRun, PodStandIn
from tests.jobimage.conftest import make_item


def pod_for(store: LocalStore, items: list, tmp_path: Path) -> dict:
    key = write_manifest(store, Manifest(job_name="job-1", items=items))
    env = {"T2V_MANIFEST": key, "T2V_STORAGE_URL": f"file://{store.root}", "T2V_MODEL_DIR": str(tmp_path / "none")}
    return {"spec": {"containers": [{"name": CONTAINER, "env": [{"name": k, "value": v} for k, v in env.items()]}]}}


def test_the_stand_in_runs_the_job_images_own_loop(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    items = [make_item(video_id="ok"), make_item(video_id="long", prompt=" ".join(["fox"] * 300))]
    standin = PodStandIn(None, "ns", run_seconds=0.01)
    run = PodRun(pod="p", job="job-1", index=0, node="n", started=0.0)
    code = standin._job_image(pod_for(store, items, tmp_path), run, threading.Event())
    assert code == ExitCode.BAD_ITEM and run.items == ["ok", "long"]
    ok = read_result(store, "ok")
    assert ok.status == "succeeded" and ok.gpu == "kwok stand-in (no GPU)" and store.exists("videos/ok/video.mp4")
    assert "T5 tokens" in read_result(store, "long").error_message


def test_an_oom_is_the_job_images_retryable_failure(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    standin = PodStandIn(None, "ns", run_seconds=0.01, oom=lambda item, try_no: try_no == 1)
    run = PodRun(pod="p", job="job-1", index=0, node="n", started=0.0)
    code = standin._job_image(pod_for(store, [make_item(video_id="v")], tmp_path), run, threading.Event())
    result = read_result(store, "v")
    assert code == ExitCode.RETRYABLE and result.error_code == "cuda_oom" and result.retryable
    assert "out of GPU memory on ['cuda:0']" in result.error_message


def test_a_deleted_pod_checkpoints_and_the_next_resumes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    pod = pod_for(store, [make_item(video_id="v", num_inference_steps=20)], tmp_path)
    standin = PodStandIn(None, "ns", run_seconds=2.0)
    first, cancel = PodRun(pod="p1", job="job-1", index=0, node="n", started=0.0), threading.Event()
    threading.Timer(0.5, cancel.set).start()
    assert standin._job_image(pod, first, cancel) == ExitCode.STOPPED
    assert first.saved["v"] >= 1 and store.exists("videos/v/checkpoint.pt")
    second = PodRun(pod="p2", job="job-1", index=0, node="n", started=0.0, try_no=2)
    assert standin._job_image(pod, second, threading.Event()) == ExitCode.OK
    assert second.resumed == {"v": first.saved["v"]}
    assert read_result(store, "v").timings["resumed_at_step"] == first.saved["v"]
