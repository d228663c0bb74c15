"""`t2v model sync` against a local folder standing in for the hub: copy, verify, READY last, resume."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from jobcontract.records import ExitCode
from jobimage import model_sync
from jobimage.errors import SyncError
from jobimage.model_folder import check_model_folder
from jobimage.model_sync import FolderSource, RemoteFile, add_arguments, ready_is_valid, run, select, sync


@pytest.fixture
def hub(tiny_folder: Path, tmp_path: Path) -> Path:
    """A copy of the tiny model laid out like the hub repo (no READY), with a checksum list."""
    root = tmp_path / "hub"
    shutil.copytree(tiny_folder, root)
    (root / "READY").unlink()
    sums = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(root).as_posix()}"
            for p in sorted(root.rglob("*")) if p.is_file()]
    (root / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    return root


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_sync_from_folder_verifies_and_writes_ready(hub, tmp_path, capsys):
    models = tmp_path / "models"
    assert run(_args("mochi-1-preview", "--dir", str(models), "--from", str(hub))) == 0
    dest = models / "mochi-1-preview"
    check_model_folder(dest)
    ready = json.loads((dest / "READY").read_text())
    expected = {p.relative_to(hub).as_posix() for p in hub.rglob("*") if p.is_file()} - {"SHA256SUMS"}
    assert set(ready["files"]) == expected
    assert not list(dest.rglob("*.part")) and not (dest / ".sync-state.json").exists()
    assert str(dest) in capsys.readouterr().out


def test_interrupted_sync_resumes_without_refetching(hub, tmp_path, monkeypatch):
    dest = tmp_path / "models" / "m"
    fetched: list[str] = []
    real = FolderSource.fetch

    def dies_after_two(self, f, part):
        if len(fetched) == 2:
            part.write_bytes((hub / f.path).read_bytes()[:10])  # a partial file, as a killed copy leaves it
            raise OSError("killed")
        fetched.append(f.path)
        return real(self, f, part)

    monkeypatch.setattr(FolderSource, "fetch", dies_after_two)
    with pytest.raises(OSError):
        sync(FolderSource(hub), dest, name="m")
    assert not (dest / "READY").exists() and len(fetched) == 2

    monkeypatch.setattr(FolderSource, "fetch", lambda self, f, part: (fetched.append(f.path), real(self, f, part)))
    sync(FolderSource(hub), dest, name="m")
    assert ready_is_valid(dest)
    assert len(fetched) == len(json.loads((dest / "READY").read_text())["files"])
    assert len(set(fetched)) == len(fetched)  # nothing fetched twice


def test_corrupt_source_file_fails_and_leaves_no_ready(hub, tmp_path):
    weights = next(hub.glob("transformer/*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")  # same size, wrong sha256
    with pytest.raises(SyncError, match="sha256"):
        sync(FolderSource(hub), tmp_path / "m", name="m")
    assert not (tmp_path / "m" / "READY").exists()
    assert run(_args("m", "--dir", str(tmp_path), "--from", str(hub))) == ExitCode.RETRYABLE


def test_verify_refetches_a_damaged_file(hub, tmp_path):
    dest = sync(FolderSource(hub), tmp_path / "m", name="m")
    vae = next(dest.glob("vae/*.safetensors"))
    good = vae.read_bytes()
    vae.write_bytes(b"\x00" * len(good))  # same size: only a hash finds it
    assert ready_is_valid(dest)  # the cheap start-up check trusts sizes
    sync(FolderSource(hub), dest, name="m", verify=True)
    assert vae.read_bytes() == good


def test_partial_file_is_resumed(hub, tmp_path):
    dest = tmp_path / "m"
    weights = next(hub.glob("text_encoder/*.safetensors"))
    rel = weights.relative_to(hub)
    part = dest / rel.parent / (rel.name + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(weights.read_bytes()[:1000])
    sync(FolderSource(hub), dest, name="m")
    assert (dest / rel).read_bytes() == weights.read_bytes()


def test_already_synced_is_a_no_op(hub, tmp_path, monkeypatch):
    dest = sync(FolderSource(hub), tmp_path / "m", name="m")
    monkeypatch.setattr(FolderSource, "list_files", lambda self: pytest.fail("listed the source again"))
    assert sync(FolderSource(hub), dest, name="m") == dest


def test_source_that_is_not_a_pipeline_is_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "README.md").write_text("hi")
    with pytest.raises(SyncError, match="no files matching model_index.json"):
        sync(FolderSource(src), tmp_path / "m", name="m")
    (src / "model_index.json").write_text("{}")
    with pytest.raises(SyncError, match="not a Mochi pipeline.*transformer/"):
        sync(FolderSource(src), tmp_path / "m", name="m")


def test_missing_source_and_dir_are_setup_errors(tmp_path, monkeypatch):
    assert run(_args("m", "--dir", str(tmp_path), "--from", str(tmp_path / "nope"))) == ExitCode.BAD_SETUP
    monkeypatch.delenv("T2V_MODEL_DIR", raising=False)
    assert run(_args("m")) == ExitCode.BAD_SETUP
    assert run(_args("../evil", "--dir", str(tmp_path), "--from", str(tmp_path))) == ExitCode.BAD_SETUP


def test_tiny_name_builds_the_tiny_model(model_dir):
    assert run(_args("tiny", "--dir", str(model_dir))) == 0  # already built by the fixture: instant
    check_model_folder(model_dir / "tiny")


def test_hub_source_reads_sizes_and_lfs_hashes(monkeypatch):
    class Sibling:
        def __init__(self, name, size, lfs=None):
            self.rfilename, self.size, self.lfs = name, size, lfs

    class Info:
        siblings = [Sibling("model_index.json", 10), Sibling(".gitattributes", 5),
                    Sibling("transformer/x.safetensors", 99, {"sha256": "ab" * 32, "size": 99})]

    class FakeApi:
        def __init__(self, token=None):
            pass

        def model_info(self, repo_id, revision=None, files_metadata=False):
            assert repo_id == "genmo/mochi-1-preview" and files_metadata
            return Info()

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    files = model_sync.HubSource("genmo/mochi-1-preview").list_files()
    assert [(f.path, f.size, f.sha256) for f in files] == [
        ("model_index.json", 10, None), ("transformer/x.safetensors", 99, "ab" * 32)]


def test_select_keeps_the_diffusers_layout_and_bf16_weights_where_present():
    names = ["model_index.json", "README.md", "dit.safetensors", "scheduler/scheduler_config.json",
             "transformer/config.json", "transformer/diffusion_pytorch_model-00001-of-00002.safetensors",
             "transformer/diffusion_pytorch_model.safetensors.index.json",
             "transformer/diffusion_pytorch_model.bf16-00001-of-00001.safetensors",
             "transformer/diffusion_pytorch_model.safetensors.index.bf16.json",
             "vae/config.json", "vae/diffusion_pytorch_model.safetensors"]
    files = [RemoteFile(n, 1) for n in names]
    assert [f.path for f in select(files)] == [
        "model_index.json", "scheduler/scheduler_config.json", "transformer/config.json",
        "transformer/diffusion_pytorch_model.bf16-00001-of-00001.safetensors",
        "transformer/diffusion_pytorch_model.safetensors.index.bf16.json",
        "vae/config.json", "vae/diffusion_pytorch_model.safetensors"]
    assert len(select(files, variant=None)) == len(files) - 2  # README.md, dit.safetensors


def _sentencepiece_only(tokenizer: Path) -> None:
    """Replace a folder's tokenizer with what Mochi's hub repo has: a T5 `spiece.model` and its config, no
    tokenizer.json (trained here on a few sentences: no hub to fetch the real one from)."""
    import io

    import sentencepiece

    words = "a red fox running through snow cat walks on the beach at sunset cinematic city night rain".split()
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter([" ".join(words[i:] + words[:i]) for i in range(len(words))] * 20),
        model_writer=model, vocab_size=40, model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        minloglevel=2)
    shutil.rmtree(tokenizer)
    tokenizer.mkdir()
    (tokenizer / "spiece.model").write_bytes(model.getvalue())
    (tokenizer / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "T5Tokenizer", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
        "extra_ids": 0}))


def test_a_sentencepiece_only_tokenizer_gets_a_tokenizer_json_that_counts_as_the_pod(hub, tmp_path):
    from transformers import AutoTokenizer

    from core.tokens import TokenCounter
    from jobimage.validate import token_count

    _sentencepiece_only(hub / "tokenizer")
    (hub / "SHA256SUMS").unlink()
    models = tmp_path / "models"
    assert run(_args("mochi-1-preview", "--dir", str(models), "--from", str(hub))) == 0
    dest = models / "mochi-1-preview"
    assert "tokenizer/tokenizer.json" in json.loads((dest / "READY").read_text())["files"]
    assert ready_is_valid(dest)
    pod = AutoTokenizer.from_pretrained(dest / "tokenizer")
    prompts = ["a red fox", "a cat walks on the beach at sunset, cinematic", "Ünïcödé zebra 🎥",
               " ".join(["fox"] * 300)]
    assert [TokenCounter(models)("mochi-1-preview", p) for p in prompts] == [token_count(pod, p) for p in prompts]


def test_a_folder_synced_before_the_tokenizer_json_was_derived_gets_it_on_the_next_sync(hub, tmp_path, monkeypatch):
    _sentencepiece_only(hub / "tokenizer")
    (hub / "SHA256SUMS").unlink()
    models = tmp_path / "models"
    assert run(_args("mochi-1-preview", "--dir", str(models), "--from", str(hub))) == 0
    dest = models / "mochi-1-preview"
    (dest / "tokenizer" / "tokenizer.json").unlink()  # as the sync before this one left it
    ready = json.loads((dest / "READY").read_text())
    del ready["files"]["tokenizer/tokenizer.json"]
    (dest / "READY").write_text(json.dumps(ready))
    monkeypatch.setattr(FolderSource, "fetch", lambda self, f, part: pytest.fail("fetched a file again"))
    assert run(_args("mochi-1-preview", "--dir", str(models), "--from", str(hub))) == 0
    assert (dest / "tokenizer" / "tokenizer.json").is_file()
