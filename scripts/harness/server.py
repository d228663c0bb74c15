"""A real `t2v serve` process on loopback (embedded mode: SQLite, local storage, runner, tiny model)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from scripts.harness.net import free_port, wait_http
from scripts.harness.procs import stop

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    """A running server: its URL, data folder, environment and log."""

    url: str
    data_dir: Path
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen
    port: int = 0
    extra: dict = field(default_factory=dict)

    def kill(self) -> None:
        """SIGKILL the server (its job processes live on in their own sessions)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        stop(self.proc, timeout=30)


def start_server(data_dir: Path, *, env: dict[str, str] | None = None, port: int | None = None) -> Server:
    """Start `t2v serve` and wait for /healthz."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, "T2V_DATA_DIR": str(data_dir), "T2V_RUNNER_POLL_SECONDS": "0.2",
                "T2V_LOG_LEVEL": "INFO", **(env or {})}
    # The tiny model is shared between tests: building it once is enough.
    full_env.setdefault("T2V_MODEL_DIR", str(shared_model_dir()))
    log = data_dir / f"server-{port}.log"
    cmd = [sys.executable, "-m", "t2vcli.main", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/healthz", timeout=120)
    except TimeoutError:
        proc.kill()
        raise RuntimeError(f"t2v serve did not start; log:\n{log.read_text()[-4000:]}") from None
    return Server(url=url, data_dir=data_dir, env=full_env, log=log, proc=proc, port=port)


def shared_model_dir() -> Path:
    """A model folder shared by every server of the test session."""
    path = Path(os.environ.get("T2V_TEST_MODEL_DIR", REPO / ".pytest_cache" / "t2v-models"))
    path.mkdir(parents=True, exist_ok=True)
    return path
