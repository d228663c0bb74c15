"""The `t2v` CLI against a real `t2v serve` on loopback (tiny model, CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import pytest

from scripts.harness.server import REPO


def t2v(*args: str, url: str | None = None, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    if url:
        full_env["T2V_URL"] = url
    return subprocess.run([sys.executable, "-m", "t2vcli.main", *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_submit_wait_download_ls_status(server, tmp_path: Path) -> None:
    r = t2v("submit", "a paper boat on a pond", "--frames", "13", "--size", "256x144", "--steps", "2",
            "--seed", "9", "--wait", "--json", url=server.url)
    assert r.returncode == 0, r.stderr
    video = json.loads(r.stdout)
    assert video["status"] == "completed" and video["seed"] == 9
    out = tmp_path / "boat.mp4"
    r = t2v("download", video["id"], "-o", str(out), url=server.url)
    assert r.returncode == 0, r.stderr
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 13
    r = t2v("ls", "--status", "completed", url=server.url)
    assert video["id"] in r.stdout and "completed" in r.stdout
    r = t2v("status", video["id"], url=server.url)
    assert r.returncode == 0 and "seed=9" in r.stdout


@pytest.mark.slow
def test_batch_progress_in_a_log_is_a_few_plain_lines(server, tmp_path: Path) -> None:
    """Not a terminal (a CI log): a line per tenth of the work or change of state, never a redraw."""
    csv = tmp_path / "p.csv"
    csv.write_text("prompt,num_frames,size,num_inference_steps\n" + "".join(f"p{i},7,256x144,2\n" for i in range(4)))
    r = t2v("batch", str(csv), "--wait", "--poll", "0.1", url=server.url)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert "\r" not in r.stderr and "\x1b" not in r.stderr
    assert lines[-1].split(": ", 1)[1].startswith("4/4 completed 4, failed 0")
    # Polled every 0.1 s for seconds: dozens of polls, yet one line per step of the 4 videos (and the first).
    assert len(lines) <= 1 + 1 + 4, lines


@pytest.mark.slow
def test_wait_in_a_terminal_redraws_one_line_with_an_eta(server) -> None:
    """In a terminal (a pty here): a rich progress line redrawn in place, with elapsed time and an ETA."""
    import pty

    primary, secondary = pty.openpty()
    env = {**os.environ, "T2V_URL": server.url, "COLUMNS": "160"}
    proc = subprocess.Popen([sys.executable, "-m", "t2vcli.main", "submit", "a kite", "--frames", "7", "--size",
                             "256x144", "--steps", "4", "--wait", "--poll", "0.1"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=secondary, text=True)
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:  # the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    out, _ = proc.communicate(timeout=300)
    os.close(primary)
    screen = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, screen
    assert "eta" in screen and "elapsed" in screen and "100/100" in screen
    assert "\r" in screen or "\x1b[" in screen  # redrawn in place, not appended
    assert "completed" in out  # the final state on stdout


def test_bad_csv_lists_rows_and_exits_nonzero(server, tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("prompt,num_frames\nok,7\n,7\nfine,9\n")
    r = t2v("batch", str(csv), url=server.url)
    assert r.returncode == 2
    assert "row 2" in r.stderr and "row 3" in r.stderr and "num_frames 9" in r.stderr


def test_cancel_and_unreachable_server(server) -> None:
    r = t2v("submit", "slow one", "--steps", "200", "--frames", "163", "--json", url=server.url)
    vid = json.loads(r.stdout)["id"]
    r = t2v("cancel", vid, "--json", url=server.url)
    assert r.returncode == 0 and json.loads(r.stdout)["status"] == "cancelled"
    r = t2v("status", "video_nope", url=server.url)
    assert r.returncode == 2 and "404" in r.stderr
    r = t2v("ls", url="http://127.0.0.1:9")
    assert r.returncode == 2 and "cannot reach" in r.stderr


@pytest.mark.parametrize(("name", "value"), [("T2V_BACKEND", "nomad"), ("T2V_RUNNER_SLOTS", "-1"),
                                             ("T2V_DATABASE_URL", "mysql://x"), ("T2V_LOG_LEVEL", "loud")])
def test_bad_setting_stops_startup_naming_it(name: str, value: str, tmp_path: Path) -> None:
    r = t2v("serve", "--port", "1", env={name: value, "T2V_DATA_DIR": str(tmp_path)}, timeout=60)
    assert r.returncode == 2
    assert name in r.stderr and value in r.stderr
