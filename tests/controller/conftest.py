"""Runner fixtures: an app, its store, and a runner over the same settings, with the real tiny model."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from controller.local.runner import LocalRunner
from scripts.harness.server import shared_model_dir
from webapp.app import create_app
from core.settings import Settings


@pytest.fixture
def run_settings(tmp_path: Path) -> Settings:
    """SQLite settings with the session's shared tiny model folder."""
    return Settings(data_dir=tmp_path / "data", model_dir=shared_model_dir(), runner_poll_seconds=0.1)


@pytest.fixture
def api(run_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(run_settings)) as c:
        yield c


@pytest.fixture
def make_runner(api: TestClient, run_settings: Settings) -> Iterator[Callable[..., LocalRunner]]:
    runners: list[LocalRunner] = []

    def make(**kw) -> LocalRunner:
        r = LocalRunner(run_settings, api.app.state.store, **kw)
        r.prepare()
        runners.append(r)
        return r

    yield make
    for r in runners:
        r.stop()


def drive(runner: LocalRunner, api: TestClient, ids: list[str], *, until: Callable[[list[dict]], bool] | None = None,
          timeout: float = 240.0) -> list[dict]:
    """Run reconcile passes until every video is terminal (or `until` holds); return the videos."""
    until = until or (lambda vs: all(v["status"] in ("completed", "failed", "cancelled") for v in vs))
    deadline = time.monotonic() + timeout
    while True:
        runner.reconcile_once()
        videos = [api.get(f"/v1/videos/{i}").json() for i in ids]
        if until(videos):
            return videos
        if time.monotonic() > deadline:
            raise TimeoutError(f"videos did not settle: {[(v['id'], v['status'], v['progress']) for v in videos]}")
        time.sleep(0.1)
