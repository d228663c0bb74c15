"""The real PostgreSQL server (scripts/harness/postgres.py) as pytest fixtures: one per session."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.harness.net import free_port
from scripts.harness.postgres import PostgresServer


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole test session."""
    root = Path(tempfile.mkdtemp(prefix="t2v-pg-"))
    server = PostgresServer(root, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


_counter = iter(range(1_000_000))


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database for one test."""
    return postgres_server.create_db(f"t2v_{os.getpid()}_{next(_counter)}_{int(time.time() * 1000) % 100000}")
