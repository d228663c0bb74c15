"""A real PostgreSQL server started from the Debian package's binaries: a throw-away cluster on a
free loopback port (`make test` installs the package: scripts/install-test-deps.sh)."""

from __future__ import annotations

import glob
import os
import pwd
import subprocess
from pathlib import Path


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed: run `bash scripts/install-test-deps.sh`")
    return found[-1]


def _as_postgres(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; the Debian package brings a `postgres` user.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class PostgresServer:
    """A running throw-away PostgreSQL cluster."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.data = root / "data"

    def start(self) -> None:
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        subprocess.run(_as_postgres([_pg_bin("initdb"), "-D", str(self.data), "-U", "t2v", "--auth=trust",
                                     "-E", "UTF8", "--no-sync"]), check=True, capture_output=True)
        self._start()

    def _start(self) -> None:
        # -l: the server's output goes to a file; a pipe would keep subprocess.run waiting forever.
        subprocess.run(_as_postgres([_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-w",
                                     "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                                           "-c fsync=off -c max_connections=300", "start"]),
                       check=True, capture_output=True)

    def stop(self) -> None:
        subprocess.run(_as_postgres([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "stop"]),
                       capture_output=True)

    def restart(self) -> None:
        """Stop (dropping connections) and start again on the same port, for fault tests."""
        self.stop()
        self._start()

    def create_db(self, name: str) -> str:
        """Create a database and return its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=t2v dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://t2v@127.0.0.1:{self.port}/{name}"
