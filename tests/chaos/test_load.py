"""Two webapp replicas on one real PostgreSQL under concurrent clients: zero errors.

A shorter run than the documented one (scripts/chaos/load.py --clients 200 --seconds 60),
so `make test` stays quick and steady on two cores; the figures in docs/reliability.md come from the full run.
"""

from __future__ import annotations

import pytest

from scripts.chaos.load import run


@pytest.mark.slow
@pytest.mark.postgres
def test_two_replicas_many_clients_no_errors(tmp_path) -> None:
    summary = run(clients=20, seconds=10, out=tmp_path / "load.json")
    assert summary["errors"] == 0, summary["error_samples"]
    assert summary["latency_ms"]["submit"]["n"] >= 20
