"""A job process of the local backend, and the lock that outlives the server that started it.

Each job process holds an exclusive flock on its job's lock file for as long as it lives, so after a
crash of the server the restarted runner can tell a job that is still running (adopt it and wait)
from one that died (run its unfinished items again).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Job:
    """A job process this runner started or adopted."""

    name: str
    video_ids: list[str]
    slot: int
    proc: subprocess.Popen | None = None  # None when adopted after a restart
    started: float = field(default_factory=time.time)
    kill_reason: str | None = None

    def exit_code(self, lock_path: Path) -> int | None:
        """The exit code if finished, None while running (adopted jobs: from the lock)."""
        if self.proc is not None:
            return self.proc.poll()
        return None if lock_held(lock_path) else -1


def lock_held(path: Path) -> bool:
    """Whether some live process holds the flock on `path`."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def take_lock(path: Path) -> int | None:
    """An fd holding the flock on `path` (to hand to the job process), or None if someone holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None
