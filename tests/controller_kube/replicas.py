"""Controller processes for the multi-replica tests, and the cluster-mode fixture's pieces."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from controller.kube.leader import KubeLeaseApi
from scripts.harness.net import free_port
from tests.controller_kube.kube import REPO
from tests.support.metrics import scrape


class Replicas:
    """Controller processes, by pid, with their logs."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: dict[int, subprocess.Popen] = {}
        self.metrics_ports: dict[int, int] = {}  # pid -> its T2V_METRICS_ADDRESS port

    def start(self) -> int:
        log = open(self.logs / f"controller-{len(self.procs)}.log", "w")  # noqa: SIM115 - lives with the process
        port = free_port()
        p = subprocess.Popen([str(Path(sys.executable).parent / "t2v"), "controller"], cwd=REPO,
                             env={**self.env, "T2V_METRICS_ADDRESS": f"127.0.0.1:{port}"},
                             stdout=log, stderr=subprocess.STDOUT)
        self.procs[p.pid] = p
        self.metrics_ports[p.pid] = port
        return p.pid

    def metric(self, pid: int, name: str) -> float | None:
        """A label-less sample of replica `pid`'s /metrics; None if it has none by that name."""
        return scrape(f"http://127.0.0.1:{self.metrics_ports[pid]}/metrics").get((name, frozenset()))

    def kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)
        self.procs[pid].wait(timeout=10)

    def alive(self) -> list[int]:
        return [pid for pid, p in self.procs.items() if p.poll() is None]

    def stop_all(self) -> None:
        for pid in self.alive():
            self.procs[pid].send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def leader_pid(leases: KubeLeaseApi, replicas: Replicas) -> int | None:
    """The pid in the Lease holder's identity (`<host>-<pid>-<random>`), if that process is alive."""
    rec = leases.read()
    if rec is None or not rec.holder or rec.renew_time + rec.lease_seconds < time.time():
        return None
    pid = int(rec.holder.rsplit("-", 2)[1])
    return pid if pid in replicas.alive() else None
