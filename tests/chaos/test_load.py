"""Two webapp replicas on one real PostgreSQL under concurrent clients: zero errors.

A shorter run than the documented one (scripts/chaos/load.py --clients 200 --seconds 60),
so `make test` stays quick and steady on two cores; the figures in docs/reliability.md come
from the full run. Each replica gets a pool of 3 connections for 20 clients, so requests do
wait for a connection (admission in webapp/deps.py) and must still all succeed.
"""

from __future__ import annotations

import pytest

from scripts.chaos.load import run


@pytest.mark.slow
@pytest.mark.postgres
def test_two_replicas_many_clients_no_errors(tmp_path) -> None:
    summary = run(clients=20, seconds=10, out=tmp_path / "load.json",
                  server_env={"T2V_DB_POOL_SIZE": "3", "T2V_DB_MAX_OVERFLOW": "2"})
    assert summary["errors"] == 0, (summary["errors_by_kind"], summary["error_samples"], summary["server_log"])
    assert summary["latency_ms"]["submit"]["n"] >= 20
    assert summary["latency_ms"]["status"]["n"] >= 3 * 20
