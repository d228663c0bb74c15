"""Prompt tokens at submission: counted with the model's tokenizer.json, as the pod's AutoTokenizer counts them."""

from __future__ import annotations

import argparse
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from core.tokens import TokenCounter
from jobcontract.records import ExitCode, tokenizer_key
from jobcontract.storage import open_store
from jobimage.model_sync import add_publish_arguments, run_publish
from jobimage.models import spec_for
from tests.plugins.minio import MinioProcess, MinioServer
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


@pytest.fixture
def published(models: Path, minio_server: MinioServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty bucket on a real MinIO, with the credentials in the environment as in cluster mode."""
    monkeypatch.setenv("T2V_S3_ACCESS_KEY", minio_server.access_key)
    monkeypatch.setenv("T2V_S3_SECRET_KEY", minio_server.secret_key)
    return minio_server.url(f"t2v-tokens-{uuid.uuid4().hex[:8]}")


def _publish(models: Path, storage_url: str) -> int:
    parser = argparse.ArgumentParser()
    add_publish_arguments(parser)
    return run_publish(parser.parse_args(["tiny", "--dir", str(models), "--storage", storage_url]))


@pytest.mark.minio
def test_the_published_tokenizer_counts_as_the_pods(models: Path, published: str, tmp_path: Path) -> None:
    """A web app without the model folder (cluster mode) counts with the copy `t2v model publish` put in storage."""
    from transformers import AutoTokenizer

    from jobimage.validate import token_count

    counter = TokenCounter(tmp_path / "no-weights", store=open_store(published), models=["tiny"])
    counter.refresh()
    assert counter("tiny", "a cat") is None  # nothing published yet
    assert _publish(models, published) == 0
    assert open_store(published).exists(tokenizer_key("tiny"))
    assert counter.refresh_due() is False  # what storage said is trusted for PUBLISHED_REFRESH_S
    counter.refresh()
    pod = AutoTokenizer.from_pretrained(models / "tiny" / "tokenizer")
    assert [counter("tiny", p) for p in PROMPTS] == [token_count(pod, p) for p in PROMPTS]


@pytest.mark.minio
def test_a_running_web_app_refuses_over_limit_prompts_once_the_tokenizer_is_published(
        models: Path, published: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Until the model cache publishes, the pod's check is the last word; from the next refresh on, the API's."""
    monkeypatch.setattr("core.tokens.PUBLISHED_REFRESH_S", 0.0)  # every request asks storage again
    settings = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "no-weights", storage_url=published,
                        models=["tiny"])
    over = {"prompt": " ".join(["fox"] * 300), "model": "tiny"}
    with TestClient(create_app(settings)) as c:
        assert c.post("/v1/videos", json=over).status_code == 200
        assert _publish(models, published) == 0
        r = c.post("/v1/videos", json=over)
        assert r.status_code == 400 and r.json()["error"]["param"] == "prompt", r.text
        assert len(c.get("/v1/videos").json()["data"]) == 1


def test_publish_refuses_a_folder_that_is_not_synced(tmp_path: Path) -> None:
    (tmp_path / "tiny").mkdir()
    assert _publish(tmp_path, f"file://{tmp_path / 'objects'}") == ExitCode.BAD_SETUP


@pytest.mark.minio
def test_a_store_that_does_not_answer_holds_a_submission_back_no_longer_than_the_refresh_wait(
        minio_process: MinioProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A frozen MinIO (SIGSTOP: connections are accepted and never answered, as a store behind a broken
    network) hangs the refresh for its 60 s read timeout; the submission waits REFRESH_WAIT_S for it, not that."""
    s = minio_process.server
    monkeypatch.setenv("T2V_S3_ACCESS_KEY", s.access_key)
    monkeypatch.setenv("T2V_S3_SECRET_KEY", s.secret_key)
    monkeypatch.setattr("core.tokens.PUBLISHED_REFRESH_S", 0.0)
    settings = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "no-weights", storage_url=s.url("frozen"),
                        models=["tiny"])
    with TestClient(create_app(settings)) as c:
        assert minio_process.proc is not None
        minio_process.proc.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            r = c.post("/v1/videos", json={"prompt": "a cat", "model": "tiny"})
            waited = time.monotonic() - started
        finally:
            minio_process.proc.send_signal(signal.SIGCONT)
    assert r.status_code == 200, r.text
    assert waited < 30, f"the submission waited {waited:.1f} s for storage"  # not the 60 s read timeout
