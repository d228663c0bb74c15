"""The test plane with a real kubelet node and t2v deployed on it from the manifests, as pytest fixtures.

`real_stack` (session) runs `scripts/testcluster up --node` (no kwok node: every pod is real) and
`deploy` (kueue/, manifests/overlays/testnode, images built here and loaded into the node's
containerd), and stops it all at the end (T2V_TESTCLUSTER_KEEP=1 keeps it). Tests carry
`@pytest.mark.realnode`.
"""

from __future__ import annotations

import os
import shutil
import sys
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.testcluster_lib import cluster, deploy
from tests.plugins.cluster import ClusterHandle, new_state_dir


# A real-node test's limit, set-up included: the first one also starts the node, and on a cold machine
# containerd unpacks the 6.6 GB job image (about 7 minutes) before `deploy`. The images themselves are
# built before pytest starts (`make test-deps`); the global 600 s killed that first set-up in a cold run.
TIMEOUT_S = 1500


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("realnode") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(TIMEOUT_S))


@dataclass(frozen=True)
class RealStack:
    """t2v deployed on the real node: the cluster, the loopback URL of the webapp Service, an admin key."""

    cluster: ClusterHandle
    url: str
    api_key: str

    def env(self) -> dict[str, str]:
        """The environment the `t2v` CLI needs to reach this deployment."""
        return {**os.environ, "T2V_URL": self.url, "T2V_API_KEY": self.api_key}

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run the `t2v` command of this venv against the deployment."""
        t2v = Path(sys.executable).with_name("t2v")
        return subprocess.run([str(t2v), *args], env=self.env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def real_stack() -> Iterator[RealStack]:
    state = new_state_dir("realnode-")
    keep = os.environ.get("T2V_TESTCLUSTER_KEEP") == "1"
    try:
        c = cluster.up(state, nodes=0, node=True)
        out = deploy.deploy(state)
    except BaseException:
        if not keep:
            cluster.down(state)
        raise
    try:
        yield RealStack(ClusterHandle(kubeconfig=c.kubeconfig, state_dir=c.state_dir, server=c.server,
                                      ports=dict(c.ports), nodes=c.nodes, gpus_per_node=c.gpus_per_node),
                        out["url"], out["api_key"])
    finally:
        if not keep:
            cluster.down(state)
            shutil.rmtree(state.parent, ignore_errors=True)
