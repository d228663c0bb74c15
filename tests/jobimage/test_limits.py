"""Input checks: the torch-free limits (jobcontract.video, the model specs) and the T5 token count."""

from __future__ import annotations

import subprocess
import sys

import pytest

from jobimage.errors import ValidationError
from jobimage.models.mochi import MOCHI
from jobimage.validate import check_item, token_count, validate_item
from tests.jobimage.conftest import make_item


MAX_SEQUENCE_LENGTH, VALID_FRAMES = MOCHI.max_prompt_tokens, MOCHI.valid_frames


def test_limits_module_does_not_import_torch():
    code = ("import sys, jobimage.models, jobimage.validate, jobcontract.video; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_valid_frames_are_6k_plus_1():
    assert VALID_FRAMES[0] == 7 and VALID_FRAMES[-1] == 163 and 31 in VALID_FRAMES and 85 in VALID_FRAMES
    assert all((f - 1) % 6 == 0 for f in VALID_FRAMES)


@pytest.mark.parametrize(("changes", "field"), [
    ({"num_frames": 8}, "num_frames"),
    ({"num_frames": 1}, "num_frames"),
    ({"num_frames": 169}, "num_frames"),
    ({"height": 100}, "height"),
    ({"width": 848 + 8}, "width"),
    ({"width": 32}, "width"),
    ({"height": 848, "width": 848}, "height x width"),
    ({"num_inference_steps": 0}, "num_inference_steps"),
    ({"num_inference_steps": 201}, "num_inference_steps"),
    ({"guidance_scale": -0.5}, "guidance_scale"),
    ({"guidance_scale": 20.5}, "guidance_scale"),
    ({"fps": 0}, "fps"),
    ({"seed": -1}, "seed"),
    ({"prompt": "  "}, "prompt"),
], ids=lambda v: str(v))
def test_bad_values_are_named(changes, field):
    problems = check_item(make_item(**changes))
    assert len(problems) == 1 and problems[0].startswith(field + ":"), problems
    value = next(iter(changes.values()))
    assert field == "prompt" or str(value) in problems[0]


@pytest.mark.parametrize("changes", [{}, {"num_frames": 163, "height": 480, "width": 848},
                                     {"guidance_scale": 0.0, "num_inference_steps": 200}], ids=str)
def test_good_values_pass(changes):
    assert check_item(make_item(**changes)) == []


def test_prompt_length_counts_t5_tokens(tiny_folder):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_folder / "tokenizer")
    assert token_count(tok, "a cat") >= 2  # pieces plus </s>
    long = " ".join(["cat"] * 300)
    problems = check_item(make_item(prompt=long), tok)
    assert problems and problems[0].startswith("prompt:") and str(MAX_SEQUENCE_LENGTH) in problems[0]
    with pytest.raises(ValidationError, match="T5 tokens"):
        validate_item(make_item(negative_prompt=long), tok)
    assert check_item(make_item(), tok) == []
