"""`t2v serve` processes (scripts/harness/server.py) as pytest fixtures, stopped at the end of a test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scripts.harness.server import Server, start_server


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start servers on demand; all are stopped at the end of the test."""
    started: list[Server] = []

    def make(data_dir: Path | None = None, **kw) -> Server:
        s = start_server(data_dir or tmp_path / "data", **kw)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@pytest.fixture
def server(server_factory: Callable[..., Server]) -> Server:
    """One embedded `t2v serve` for a test."""
    return server_factory()
