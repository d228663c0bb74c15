"""Stopped items keep their denoising: SIGTERM saves a checkpoint, the next run resumes from it.

The tiny Mochi on CPU devices stands in for the real model on GPUs (no GPU here); the
scheduler, the loop, the signal handling and the storage are the job image's own.
"""

from __future__ import annotations

import hashlib
import signal
import threading

import pytest
import torch

from jobcontract.records import ExitCode, read_result, video_keys
from jobcontract.storage import LocalStore
from jobimage import checkpoint, entrypoint
from jobimage.checkpoint import Checkpoint, Stopped
from jobimage.entrypoint import StopSignal, Terminated, main
from jobimage.models.pipeline import denoise, load_workers
from tests.jobimage.conftest import job_env, make_item

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def worker(tiny_folder):
    [w] = load_workers(tiny_folder, [torch.device("cpu")])
    yield w
    w.close()


def stop_at(step: int) -> tuple[threading.Event, object]:
    stop = threading.Event()
    return stop, lambda phase, s, total: stop.set() if phase == "denoising" and s == step else None


@pytest.mark.parametrize("at", [1, 4, 6])
def test_a_resumed_run_ends_with_the_latents_of_an_uninterrupted_one(worker, at):
    item = make_item(num_inference_steps=6)
    whole = denoise(item, [worker])
    stop, progress = stop_at(at)
    with pytest.raises(Stopped) as stopped:
        denoise(item, [worker], progress, stop=stop)
    saved = stopped.value.checkpoint
    assert saved.step == at and saved.latents.device.type == "cpu"
    assert not torch.equal(saved.latents, whole) or at == 6

    steps: list[int] = []
    timings: dict[str, float] = {}
    resumed = denoise(item, [worker], lambda phase, s, total: steps.append(s) if phase == "denoising" else None,
                      timings, resume=saved)
    assert torch.equal(resumed, whole)
    assert steps == list(range(at, 7)) and timings["resumed_at_step"] == at


def test_latents_of_another_shape_are_not_resumed(worker):
    item = make_item(num_inference_steps=3)
    with pytest.warns(RuntimeWarning, match="do not fit"):
        again = denoise(item, [worker], resume=Checkpoint(step=2, latents=torch.zeros(1)))
    assert torch.equal(again, denoise(item, [worker]))


def test_save_and_load_round_trip_and_what_is_ignored(store: LocalStore):
    item = make_item(num_inference_steps=8)
    assert checkpoint.load(store, item) is None
    latents = torch.randn(1, 12, 2, 8, 12).to(torch.bfloat16)
    checkpoint.save(store, item, Checkpoint(step=3, latents=latents))
    back = checkpoint.load(store, item)
    assert back.step == 3 and back.latents.dtype == torch.bfloat16 and torch.equal(back.latents, latents)
    # The attempt and fps do not change the latents; the seed, prompt or steps do.
    assert checkpoint.load(store, make_item(num_inference_steps=8, attempt=2, fps=24)) is not None
    for other in (make_item(num_inference_steps=8, seed=8), make_item(num_inference_steps=8, prompt="a dog"),
                  make_item(num_inference_steps=9)):
        assert checkpoint.load(store, other) is None
    key = video_keys(item.video_id)["checkpoint"]
    store.put_bytes(key, b"torn")
    assert checkpoint.load(store, item) is None
    checkpoint.save(store, item, Checkpoint(step=9, latents=latents))  # past the item's 8 steps
    assert checkpoint.load(store, item) is None
    checkpoint.discard(store, item)
    assert not store.exists(key)
    custom = make_item(outputs={"video": "out/v.mp4", "thumbnail": "out/t.jpg", "progress": "out/p.json",
                                "result": "out/r.json"})
    assert checkpoint.save(store, custom, Checkpoint(step=1, latents=latents)) is False  # no key for it
    assert checkpoint.load(store, custom) is None and store.list("out") == []


def test_sigterm_before_generation_ends_the_process_at_once(store, model_dir, monkeypatch):
    monkeypatch.setattr(entrypoint, "check_model_folder", lambda path: signal.raise_signal(signal.SIGTERM))
    env = job_env(store, model_dir, [make_item(video_id="early")])
    assert main(env) == ExitCode.STOPPED
    assert read_result(store, "early") is None and checkpoint.load(store, make_item(video_id="early")) is None
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # main() put the default handler back
    with pytest.raises(Terminated):
        StopSignal()(signal.SIGTERM, None)


def test_sigterm_while_generating_saves_checkpoints_and_the_next_run_resumes(store, model_dir, tmp_path,
                                                                             monkeypatch):
    """A real SIGTERM through main()'s handler at denoising step 2 of the two items running on two
    CPU devices; the third item (queued to split guidance afterwards) never starts."""
    items = [make_item(video_id=f"v{i}", seed=i, num_inference_steps=64) for i in range(3)]
    original = entrypoint.ItemRun.progress
    both_at_step_2 = threading.Barrier(2, timeout=120)  # a loaded machine may hold one device back for seconds

    def progress(self, phase, step=0, total=0):
        original(self, phase, step, total)
        if phase == "denoising" and step == 2:
            if both_at_step_2.wait() == 0:
                # Raised in this device thread, as the kernel may deliver a pod's SIGTERM to any thread;
                # the handler runs when the main thread next runs Python code.
                signal.raise_signal(signal.SIGTERM)
            # Both devices hold at step 2 until the handler has run (it is main()'s StopSignal).
            assert signal.getsignal(signal.SIGTERM).event.wait(timeout=120)

    monkeypatch.setattr(entrypoint.ItemRun, "progress", progress)
    env = job_env(store, model_dir, items, devices="cpu,cpu")
    assert main(env) == ExitCode.STOPPED
    for item in items:
        assert read_result(store, item.video_id) is None
    assert [checkpoint.load(store, i).step for i in items[:2]] == [2, 2]
    assert checkpoint.load(store, items[2]) is None

    monkeypatch.setattr(entrypoint.ItemRun, "progress", original)
    assert main(env) == ExitCode.OK
    results = [read_result(store, i.video_id) for i in items]
    assert [r.status for r in results] == ["succeeded"] * 3
    assert [r.timings.get("resumed_at_step") for r in results] == [2, 2, None]
    assert not any(store.exists(video_keys(i.video_id)["checkpoint"]) for i in items)

    # The same videos, byte for byte, as runs never stopped.
    fresh = LocalStore(tmp_path / "fresh")
    assert main(job_env(fresh, model_dir, items, devices="cpu,cpu")) == ExitCode.OK
    for item in items:
        assert digest(store, item.video_id) == digest(fresh, item.video_id)


def digest(store: LocalStore, video_id: str) -> str:
    return hashlib.sha256(store.get_bytes(video_keys(video_id)["video"])).hexdigest()


def test_the_finished_latents_are_kept_until_the_result_so_a_failed_decode_only_decodes_again(
        store, model_dir, tmp_path, monkeypatch):
    """A pod killed or out of memory while decoding, encoding or uploading: the latents of the last
    step are in storage before the VAE decode starts, and the next pod only decodes."""
    from jobimage.models import pipeline as gen

    item = make_item(video_id="late", num_inference_steps=5)
    real_decode = gen.decode
    seen: list[int] = []

    def decode_out_of_memory(worker, latents):
        seen.append(checkpoint.load(store, item).step)  # already stored when the decode starts
        raise torch.OutOfMemoryError("CUDA out of memory (decode)")

    monkeypatch.setattr(gen, "decode", decode_out_of_memory)
    env = job_env(store, model_dir, [item])
    assert main(env) == ExitCode.RETRYABLE
    assert seen == [5] and read_result(store, "late").error_code == "cuda_oom"

    monkeypatch.setattr(gen, "decode", real_decode)
    steps: list[int] = []
    original = entrypoint.ItemRun.progress
    monkeypatch.setattr(entrypoint.ItemRun, "progress", lambda self, phase, step=0, total=0: (
        steps.append(step) if phase == "denoising" else None, original(self, phase, step, total)))
    assert main(env) == ExitCode.OK
    result = read_result(store, "late")
    assert result.status == "succeeded" and result.timings["resumed_at_step"] == 5
    assert steps == [5]  # no denoising step ran again
    assert not store.exists(video_keys("late")["checkpoint"])

    fresh = LocalStore(tmp_path / "fresh")
    assert main(job_env(fresh, model_dir, [item])) == ExitCode.OK
    assert digest(store, "late") == digest(fresh, "late")
