"""Schemathesis with every check against our own /openapi.json on a running embedded server (the
README's `make run` defaults: local runner, tiny model): no 5xx; every request the schema calls valid
is accepted and every one it calls invalid refused; every status code, content type, header and body
as the schema says; a created object found by its links. A fixed budget and seed.

JSON Schema cannot say everything the server checks (a CSV's rows, a token limit); where it cannot,
the schema describes a subset that is always accepted (webapp/csvfile.py CSV_SCHEMA), so the checks
need no exclusions. The prompt's token limit is the exception: no length is both always within it and
always refused beyond it ("0" * 255 is 257 tokens, "0" followed by 254 "*" fewer than 256), so this
server counts no tokens (T2V_CHECK_PROMPT_TOKENS=false) and the schema's 2000 characters are exactly
what it checks; tests/core/test_tokens.py tests the count.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.harness.server import start_server

EXAMPLES = 100  # per operation and phase; 18 operations, about 2,500 requests
SEED = "20261204"


@pytest.mark.slow
def test_api_conforms_to_its_schema(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", env={"T2V_CHECK_PROMPT_TOKENS": "false"})
    try:
        st = Path(sys.executable).with_name("schemathesis")
        r = subprocess.run([str(st), "run", f"{server.url}/openapi.json", "--checks", "all", "--max-examples",
                            str(EXAMPLES), "--seed", SEED, "--no-color"],
                           capture_output=True, text=True, timeout=1200, cwd=tmp_path)
    finally:
        server.stop()
    report = r.stdout[-6000:]
    generated = re.search(r"(\d+) generated", r.stdout)
    assert generated and int(generated[1]) >= 2000, report
    assert r.returncode == 0, report
    assert " 500 " not in server.log.read_text(), "the server logged a 500"
