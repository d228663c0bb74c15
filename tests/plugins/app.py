"""App fixtures: settings on a temp folder, a DB on SQLite and on real PostgreSQL, a test client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from webapp.app import create_app
from core.settings import Settings


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each DB test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 't2v.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """Embedded settings rooted in a temp folder."""
    return Settings(data_dir=tmp_path / "data", database_url=db_url, runner_poll_seconds=0.1)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """A client for a fresh app (no runner: videos stay queued unless a test runs one)."""
    with TestClient(create_app(settings)) as c:
        yield c
