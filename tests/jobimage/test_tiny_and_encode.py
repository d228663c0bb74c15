"""The tiny model's folder and build rules; the MP4 encoder's exact frame count."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from jobimage.encode import encode_mp4, write_thumbnail
from jobimage.errors import EncodeError, ModelFolderError
from jobimage.model_folder import check_model_folder, model_path
from jobimage.models.tiny import TINY_VERSION, ensure_tiny_model


def test_tiny_folder_loads_like_the_real_model(tiny_folder):
    from diffusers import MochiPipeline

    check_model_folder(tiny_folder)
    index = json.loads((tiny_folder / "model_index.json").read_text())
    assert index["_class_name"] == "MochiPipeline"
    assert index["transformer"] == ["diffusers", "MochiTransformer3DModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKLMochi"]
    assert index["text_encoder"][1] == "T5EncoderModel"
    pipe = MochiPipeline.from_pretrained(tiny_folder)
    assert pipe.tokenizer.model_max_length == 256
    assert pipe.tokenizer("a cat").input_ids[-1] == pipe.tokenizer.eos_token_id


def test_ensure_is_idempotent(model_dir):
    tiny = model_dir / "tiny"
    stamp = (tiny / "READY").stat().st_mtime_ns
    assert ensure_tiny_model(model_dir) == tiny
    assert (tiny / "READY").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_concurrent_builders_leave_one_good_folder(tmp_path):
    results, errors = [], []

    def build():
        try:
            results.append(ensure_tiny_model(tmp_path))
        except Exception as e:  # collected for the assertion below
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [tmp_path / "tiny"] * 2
    check_model_folder(tmp_path / "tiny")
    assert json.loads((tmp_path / "tiny" / "READY").read_text())["tiny_version"] == TINY_VERSION
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]  # no temp folders left behind


def test_missing_parts_are_named(tmp_path):
    folder = tmp_path / "mochi-1-preview"
    (folder / "vae").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    with pytest.raises(ModelFolderError) as e:
        check_model_folder(folder)
    msg = str(e.value)
    assert str(folder) in msg and "transformer/" in msg and "vae/config.json" in msg and "READY" in msg
    with pytest.raises(ModelFolderError, match="does not exist"):
        check_model_folder(tmp_path / "nothing")
    with pytest.raises(ModelFolderError, match="plain folder name"):
        model_path(tmp_path, "../x")


def test_mp4_has_exact_frames_fps_and_size(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, size=(163, 64, 96, 3), dtype=np.uint8)
    path = encode_mp4(frames, 30, tmp_path / "v.mp4")
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert (sum(1 for _ in c.decode(s)), s.width, s.height, float(s.average_rate)) == (163, 96, 64, 30.0)
        assert s.codec_context.name == "h264" and s.format.name == "yuv420p"
    head = path.read_bytes()[:4096]
    assert head.find(b"moov") < head.find(b"mdat") or b"mdat" not in head  # faststart: index first
    thumb = write_thumbnail(frames, tmp_path / "t.jpg")
    assert thumb.read_bytes()[:2] == b"\xff\xd8"


def test_encoder_refuses_wrong_frames(tmp_path):
    with pytest.raises(EncodeError, match="uint8"):
        encode_mp4(np.zeros((3, 16, 16, 3), dtype=np.float32), 30, Path(tmp_path) / "x.mp4")
