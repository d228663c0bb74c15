"""The entrypoint's generator seam: a fake generator runs through the real pod (checks, checkpoints,
publishing, exit codes) with no model folder and no weights, as the kwok stand-in does."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from jobcontract.records import ExitCode, read_result
from jobimage import checkpoint
from jobimage.entrypoint import Settings, StopSignal, run
from scripts.harness.standin import StandInWorker
from tests.jobimage.conftest import job_env, make_item


class Words:
    def __call__(self, text: str, **_: object) -> dict[str, list[int]]:
        return {"input_ids": [0] * (len(text.split()) + 1)}


@dataclass
class Clip:
    frames: np.ndarray
    seed: int
    timings: dict[str, float]


class FakeGenerator:
    """Gray frames; stops (raising `checkpoint.Stopped`) after `stop_after` steps when asked to."""

    def __init__(self, stop_after: int | None = None, stop: threading.Event | None = None) -> None:
        self.stop_after, self.stop_event = stop_after, stop
        self.resumed: dict[str, int] = {}
        self.prepared: list[str] = []

    def prepare(self, model_dir: Path, name: str) -> Words:
        self.prepared.append(name)
        return Words()

    def load(self, model_dir: Path, name: str, devices: str | None, compile_mode: str) -> list[StandInWorker]:
        return [StandInWorker(device="fake", gpu="fake gpu")]

    def generate(self, item, workers, on_progress, *, resume, stop, on_denoised):
        start = resume.step if resume else 0
        if resume:
            self.resumed[item.video_id] = start
        for step in range(start + 1, item.num_inference_steps + 1):
            on_progress("denoising", step, item.num_inference_steps)
            if self.stop_after is not None and step == self.stop_after:
                self.stop_event.set()
            if stop is not None and stop.is_set():
                raise checkpoint.Stopped(checkpoint.Checkpoint(step=step, latents=torch.zeros(1)))
        return Clip(frames=np.full((item.num_frames, item.height, item.width, 3), 128, np.uint8), seed=item.seed,
                    timings={"denoise": 0.0})

    def free_memory(self, device=None) -> None:
        pass


def test_a_fake_generator_makes_real_outputs_without_a_model_folder(store, tmp_path: Path) -> None:
    items = [make_item(video_id="ok"), make_item(video_id="bad", num_frames=8),
             make_item(video_id="long", prompt=" ".join(["fox"] * 300))]
    settings = Settings.from_env(job_env(store, tmp_path / "no-models", items))
    fake = FakeGenerator()
    assert run(settings, generator=fake) == ExitCode.BAD_ITEM
    ok = read_result(store, "ok")
    assert ok.status == "succeeded" and ok.gpu == "fake gpu" and (ok.num_frames, ok.width, ok.height) == (7, 96, 64)
    assert store.exists("videos/ok/video.mp4") and store.exists("videos/ok/thumbnail.jpg")
    assert "num_frames: 8" in read_result(store, "bad").error_message
    assert "T5 tokens" in read_result(store, "long").error_message
    assert fake.prepared == ["tiny"]


def test_a_stopped_fake_item_checkpoints_and_the_next_pod_resumes(store, tmp_path: Path) -> None:
    env = job_env(store, tmp_path / "no-models", [make_item(video_id="v", num_inference_steps=5)])
    stop = StopSignal()
    first = FakeGenerator(stop_after=2, stop=stop.event)
    assert run(Settings.from_env(env), stop, generator=first) == ExitCode.STOPPED
    assert read_result(store, "v") is None and store.exists("videos/v/checkpoint.pt")
    second = FakeGenerator()
    assert run(Settings.from_env(env), generator=second) == ExitCode.OK
    assert second.resumed == {"v": 2} and read_result(store, "v").status == "succeeded"
