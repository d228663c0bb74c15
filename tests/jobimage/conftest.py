"""Fixtures for the job image: the tiny Mochi (built once per session), stores and item builders."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from jobcontract.records import Item, Manifest, write_manifest
from jobcontract.storage import LocalStore


# diffusers' Mochi RoPE opens an fp32 autocast region, which torch warns about on CPU only.
CPU_AUTOCAST_WARNING = "ignore:In CPU autocast, but the target dtype is not supported:UserWarning"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.filterwarnings(CPU_AUTOCAST_WARNING))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder holding `tiny/`, built once for the whole session."""
    from jobimage.models.tiny import ensure_tiny_model

    root = tmp_path_factory.mktemp("models")
    ensure_tiny_model(root)
    return root


@pytest.fixture(scope="session")
def tiny_folder(model_dir: Path) -> Path:
    return model_dir / "tiny"


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(store_root: Path) -> LocalStore:
    return LocalStore(store_root)


BASE_ITEM = Item(video_id="v1", index=0, prompt="a cat walks on the beach at sunset", negative_prompt="",
                 seed=7, num_frames=7, height=64, width=96, num_inference_steps=3, guidance_scale=4.5, fps=30,
                 model="tiny")


def make_item(**changes) -> Item:
    """A small, valid tiny-model item with `changes` applied."""
    return replace(BASE_ITEM, **changes)


def job_env(store: LocalStore, model_dir: Path, items: list[Item], *, devices: str = "cpu",
            index: int = 0, job: str = "job-1") -> dict[str, str]:
    """Store a manifest of `items` and return the environment a pod would get."""
    key = write_manifest(store, Manifest(job_name=job, items=items))
    return {"T2V_MANIFEST": key, "T2V_STORAGE_URL": f"file://{store.root}", "T2V_MODEL_DIR": str(model_dir),
            "T2V_DEVICES": devices, "JOB_COMPLETION_INDEX": str(index)}
