"""One logging setup for service and controller: the message and its key/value context, as text or JSON."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from core import log
from scripts.harness.server import REPO


@pytest.fixture
def capture(capsys):
    def run(fmt: str) -> str:
        log.setup(level="INFO", fmt=fmt)
        try:
            logging.getLogger("t2v.runner").info("job started", extra={"job": "local-abc", "videos": ["video_x"],
                                                                       "note": "two words"})
            try:
                raise ValueError("boom")
            except ValueError:
                logging.getLogger("t2v.runner").exception("pass failed", extra={"attempt": 2})
        finally:
            for h in [h for h in logging.getLogger().handlers if getattr(h, "_t2v", False)]:
                logging.getLogger().removeHandler(h)
        return capsys.readouterr().err
    return run


def test_text_keeps_the_context_after_the_message(capture) -> None:
    first, *rest = capture("text").splitlines()
    assert first.endswith('INFO t2v.runner job started job=local-abc videos=["video_x"] note="two words"')
    assert any(line.endswith("pass failed attempt=2") for line in rest) and "ValueError: boom" in "\n".join(rest)


def test_json_lines_carry_the_context_as_keys(capture) -> None:
    lines = [json.loads(line) for line in capture("json").splitlines()]
    assert lines[0]["msg"] == "job started" and lines[0]["job"] == "local-abc" and lines[0]["videos"] == ["video_x"]
    assert lines[0]["level"] == "info" and lines[0]["logger"] == "t2v.runner" and lines[0]["ts"].endswith("Z")
    assert lines[1]["attempt"] == 2 and "ValueError: boom" in lines[1]["exc"]


def test_uvicorns_coloured_copy_of_the_message_is_not_context(capsys) -> None:
    log.setup(level="INFO", fmt="text")
    try:
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 42,
                                                extra={"color_message": "Started server process [\x1b[36m%d\x1b[0m]"})
    finally:
        for h in [h for h in logging.getLogger().handlers if getattr(h, "_t2v", False)]:
            logging.getLogger().removeHandler(h)
    line = capsys.readouterr().err.strip()
    assert line.endswith("INFO uvicorn.error Started server process [42]"), line


def test_a_bad_format_is_refused_naming_the_variable(tmp_path) -> None:
    r = subprocess.run([sys.executable, "-m", "t2vcli.main", "serve", "--port", "1"], cwd=REPO, capture_output=True,
                       text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "T2V_DATA_DIR": str(tmp_path),
                                                   "T2V_LOG_FORMAT": "xml"})
    assert r.returncode == 2 and "T2V_LOG_FORMAT='xml'" in r.stderr
