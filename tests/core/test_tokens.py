"""Prompt tokens at submission: counted with the model's tokenizer.json, as the pod's AutoTokenizer counts them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from core.tokens import TokenCounter
from jobimage.models import spec_for
from scripts.harness.server import shared_model_dir
from webapp.app import create_app

PROMPTS = ["a cat", "a cat walks on the beach at sunset, cinematic, 4k", "Ünïcödé 🎥 and    spaces!!",
           " ".join(["fox"] * 300), "x"]


@pytest.fixture(scope="module")
def models() -> Path:
    from jobimage.models.tiny import ensure_tiny_model

    ensure_tiny_model(shared_model_dir())
    return shared_model_dir()


@pytest.fixture
def client_with_tokenizer(models: Path, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", model_dir=models))) as c:
        yield c


@pytest.mark.parametrize("prompt", PROMPTS, ids=range(len(PROMPTS)))
def test_the_count_agrees_with_the_pods_tokenizer(models: Path, prompt: str) -> None:
    from transformers import AutoTokenizer

    from jobimage.validate import token_count

    pod = AutoTokenizer.from_pretrained(models / "tiny" / "tokenizer")
    assert TokenCounter(models)("tiny", prompt) == token_count(pod, prompt)


def test_without_a_tokenizer_file_nothing_is_counted(tmp_path: Path) -> None:
    assert TokenCounter(tmp_path)("mochi-1-preview", "a cat") is None


def test_an_over_limit_prompt_is_a_400_naming_prompt(client_with_tokenizer: TestClient) -> None:
    limit = spec_for("tiny").max_prompt_tokens
    over = " ".join(["fox"] * 300)  # 1,199 characters: under the character cap, over the tokens
    r = client_with_tokenizer.post("/v1/videos", json={"prompt": over, "model": "tiny"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == "prompt" and str(limit) in err["message"] and "tokens" in err["message"]
    r = client_with_tokenizer.post("/v1/videos", json={"prompt": "a", "negative_prompt": over, "model": "tiny"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "negative_prompt"
    assert client_with_tokenizer.get("/v1/videos").json()["data"] == []


def test_a_prompt_within_the_limit_is_queued(client_with_tokenizer: TestClient) -> None:
    r = client_with_tokenizer.post("/v1/videos", json={"prompt": ", ".join(["a cat walks on the beach at sunset"] * 8), "model": "tiny"})
    assert r.status_code == 200, r.text


def test_the_form_refuses_it_too(client_with_tokenizer: TestClient) -> None:
    r = client_with_tokenizer.post("/ui/videos", data={"prompt": " ".join(["fox"] * 300)},
                                   headers={"HX-Request": "true"})
    assert "tokens" in r.text
    assert client_with_tokenizer.get("/v1/videos").json()["data"] == []
