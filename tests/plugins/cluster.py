"""The real loopback Kubernetes + Kueue control plane (scripts/testcluster) as pytest fixtures.

`test_cluster` brings one cluster up per session (building the binaries first if the
cache lacks them) and stops it at the end; `k8s_namespace` gives each test a fresh
namespace. Set T2V_TESTCLUSTER_KEEP=1 to leave the cluster running for debugging.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.testcluster_lib import build, cluster


@dataclass(frozen=True)
class ClusterHandle:
    """A running test cluster: where its kubeconfig is, how to talk to it."""

    kubeconfig: str
    state_dir: str
    server: str  # https://127.0.0.1:PORT
    ports: dict[str, int]  # component -> loopback port
    nodes: int
    gpus_per_node: int

    def api_client(self):
        """A new kubernetes.client.ApiClient for this cluster (close it when done)."""
        from kubernetes import config  # noqa: PLC0415 - only cluster tests need the client

        return config.new_client_from_config(config_file=self.kubeconfig)

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        """Run the built kubectl against this cluster."""
        return self._run(build.binary("kubectl"), args, check, input)

    def kueuectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run the built kueuectl (`kubectl kueue`) against this cluster."""
        return self._run(build.binary("kubectl-kueue"), args, check, None)

    def log(self, component: str) -> Path:
        """The log file of one component (etcd, kube-apiserver, ..., kwok, kueue)."""
        return Path(self.state_dir) / "logs" / f"{component}.log"

    def _run(self, binary: Path, args, check: bool, input: str | None) -> subprocess.CompletedProcess:
        p = subprocess.run([str(binary), "--kubeconfig", self.kubeconfig, *args], capture_output=True, text=True,
                           input=input, timeout=120)
        if check and p.returncode != 0:
            raise AssertionError(f"{binary.name} {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
        return p


def new_state_dir(prefix: str) -> Path:
    """A fresh state folder for one session's plane (binaries built first, so a build is not a test's time)."""
    if build.missing():
        build.build()
    runs = build.cache_root() / "pytest-state"
    runs.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=runs)) / "state"


@pytest.fixture(scope="session")
def test_cluster() -> Iterator[ClusterHandle]:
    """One loopback control plane for the session: 1 kwok node with 8 nvidia.com/gpu."""
    state = new_state_dir("cluster-")
    try:
        c = cluster.up(state)
    except BaseException:
        cluster.down(state) if os.environ.get("T2V_TESTCLUSTER_KEEP") != "1" else None
        raise
    try:
        yield ClusterHandle(kubeconfig=c.kubeconfig, state_dir=c.state_dir, server=c.server, ports=dict(c.ports),
                            nodes=c.nodes, gpus_per_node=c.gpus_per_node)
    finally:
        if os.environ.get("T2V_TESTCLUSTER_KEEP") != "1":
            cluster.down(state)
            shutil.rmtree(state.parent, ignore_errors=True)


@pytest.fixture
def k8s_namespace(test_cluster: ClusterHandle) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) afterwards."""
    name = f"t2v-test-{uuid.uuid4().hex[:8]}"
    test_cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        test_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
