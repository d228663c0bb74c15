"""Generation on CPU devices: split guidance equals single-device guidance; device parsing."""

from __future__ import annotations

import pytest
import torch

from jobimage.errors import SetupError
from jobimage.models.pipeline import decode, denoise, load_workers, parse_devices
from tests.jobimage.conftest import make_item

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workers(tiny_folder):
    ws = load_workers(tiny_folder, [torch.device("cpu"), torch.device("cpu")])
    yield ws
    for w in ws:
        w.close()


def test_split_guidance_matches_single_device(workers):
    item = make_item(prompt="waves crash on rocks at night", negative_prompt="blurry", num_inference_steps=4)
    single = denoise(item, workers[:1])
    split = denoise(item, workers)
    assert single.shape == (1, 12, 2, 8, 12)
    torch.testing.assert_close(split, single, rtol=1e-4, atol=1e-5)
    assert not torch.equal(single, denoise(make_item(seed=8, num_inference_steps=4), workers[:1]))


def test_without_guidance_one_device_is_used(workers):
    item = make_item(guidance_scale=1.0, num_inference_steps=2)
    torch.testing.assert_close(denoise(item, workers), denoise(item, workers[:1]))


def test_same_seed_same_frames(workers):
    item = make_item(num_inference_steps=2)
    a = decode(workers[0], denoise(item, workers[:1]))
    b = decode(workers[1], denoise(item, workers[1:]))
    assert a.shape == (7, 64, 96, 3) and a.dtype.name == "uint8"
    assert (a == b).all()


@pytest.mark.parametrize(("spec", "expected"), [("cpu", ["cpu"]), ("cpu, cpu", ["cpu", "cpu"])])
def test_parse_devices(spec, expected):
    assert [str(d) for d in parse_devices(spec)] == expected


@pytest.mark.parametrize("spec", ["cuda:7", "nonsense", "meta"])
def test_bad_device_lists_are_setup_errors(spec):
    if spec == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("has 8 GPUs")
    with pytest.raises(SetupError, match="T2V_DEVICES"):
        parse_devices(spec)


def test_default_devices_without_gpu():
    if torch.cuda.is_available():
        pytest.skip("has a GPU")
    assert [str(d) for d in parse_devices(None)] == ["cpu"]


def test_compiled_workers_match_eager_and_reuse_their_graphs(tiny_folder, workers):
    """T2V_COMPILE=on: inductor-compiled blocks (split guidance, one thread per device) give the eager
    latents, and a second prompt of another length compiles nothing new."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    compiled = load_workers(tiny_folder, [torch.device("cpu"), torch.device("cpu")], compile_mode="on")
    try:
        first = make_item(prompt="waves crash on rocks at night", negative_prompt="blurry", num_inference_steps=3)
        torch.testing.assert_close(denoise(first, compiled), denoise(first, workers), rtol=1e-3, atol=1e-4)
        graphs = counters["stats"]["unique_graphs"]
        assert graphs >= 1  # the blocks really were compiled
        second = make_item(prompt="a cat", num_inference_steps=3, seed=9)
        torch.testing.assert_close(denoise(second, compiled), denoise(second, workers), rtol=1e-3, atol=1e-4)
        assert counters["stats"]["unique_graphs"] == graphs
    finally:
        for w in compiled:
            w.close()
        torch._dynamo.reset()


@pytest.mark.parametrize(("mode", "device", "expected"), [
    ("auto", "cpu", False), ("auto", "cuda", True), ("on", "cpu", True), ("off", "cuda", False)])
def test_compile_mode(mode, device, expected):
    from jobimage.models.pipeline import should_compile

    assert should_compile(mode, torch.device(device)) is expected
