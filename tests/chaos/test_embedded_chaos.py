"""Faults in embedded mode: SIGKILL the server and job processes during submissions and cancels;
afterwards every accepted video ended exactly once, none ran twice at once, DB and storage agree."""

from __future__ import annotations

import pytest

from scripts.chaos.embedded import run


@pytest.mark.slow
def test_random_kills_lose_nothing_and_run_nothing_twice(tmp_path) -> None:
    summary = run(iterations=12, seed=1, out=tmp_path / "chaos.json")
    assert summary["server_kills"] >= 1 and summary["job_kills"] >= 1, summary
    assert summary["accepted"] >= 10 and summary["unanswered_submissions"] == 0, summary
    assert summary["violations"] == [], summary["violations"]
    assert set(summary["statuses"]) <= {"completed", "cancelled", "failed"}
