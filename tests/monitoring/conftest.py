"""promtool for the monitoring tests, built from source on first use (scripts/prometheus_tools.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scripts import prometheus_tools

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def promtool() -> Path:
    """The pinned promtool; `make test-deps` builds it, this builds it if the cache lacks it."""
    if not prometheus_tools.binary().is_file():
        # Its own process: the build sets GOFLAGS (build tags) for itself.
        subprocess.run([sys.executable, "-m", "scripts.prometheus_tools", "build"], cwd=REPO, check=True, timeout=3600)
    return prometheus_tools.binary()
