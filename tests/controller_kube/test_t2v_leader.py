"""Lease leader election on a real coordination.k8s.io Lease: the API server enforces resourceVersion.

The electors get a hand-turned clock so lease expiry needs no sleeping; the Lease object, its
optimistic concurrency and the connection failures are the real thing.
"""

from __future__ import annotations

import time

import pytest
from kubernetes import config

from controller.kube.leader import KubeLeaseApi, LeaderElector, LeaseRecord
from tests.plugins.cluster import ClusterHandle
from scripts.harness.net import free_port

pytestmark = pytest.mark.cluster


class Clock:
    def __init__(self) -> None:
        self.t = float(int(time.time()))  # whole seconds: MicroTime must still carry .000000

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def leases(test_cluster: ClusterHandle, k8s_namespace: str):
    config.load_kube_config(test_cluster.kubeconfig)  # KubeLeaseApi uses the default client config

    def make() -> KubeLeaseApi:
        return KubeLeaseApi(k8s_namespace, "t2v-controller")

    return make


def test_two_controllers_only_one_leads_and_the_other_takes_over_after_expiry(leases) -> None:
    clock = Clock()
    a = LeaderElector(leases(), identity="a", lease_seconds=15, renew_seconds=10, clock=clock)
    b = LeaderElector(leases(), identity="b", lease_seconds=15, renew_seconds=10, clock=clock)
    assert a.is_leader() and not b.is_leader()
    clock.t += 11
    assert a.is_leader() and not b.is_leader()  # a renewed
    assert leases().read().holder == "a"
    # a dies (stops renewing): b takes over once the lease has run out, not before
    clock.t += 14
    assert not b.is_leader()
    clock.t += 2
    assert b.is_leader()
    rec = leases().read()
    assert rec.holder == "b" and rec.lease_seconds == 15 and rec.renew_time == clock.t


def test_leader_that_cannot_renew_stops_acting_when_its_lease_ends(leases) -> None:
    clock = Clock()
    api = leases()
    a = LeaderElector(api, identity="a", lease_seconds=15, renew_seconds=10, clock=clock)
    assert a.is_leader()
    api.api.api_client.configuration.host = f"https://127.0.0.1:{free_port()}"  # API server unreachable
    clock.t += 11
    assert a.is_leader()  # still inside its lease
    clock.t += 5
    assert not a.is_leader()


def test_stale_version_loses_the_race(leases) -> None:
    api = leases()
    assert api.create(LeaseRecord("x", time.time(), 15))
    assert not api.create(LeaseRecord("y", time.time(), 15))  # 409: exists
    stale = api.read()
    assert api.update(LeaseRecord("a", time.time(), 15, stale.version))
    assert not api.update(LeaseRecord("b", time.time(), 15, stale.version))  # 409: a won
    assert api.read().holder == "a"


def test_a_leader_that_releases_at_shutdown_is_replaced_at_once(leases) -> None:
    """`t2v controller` releases the Lease on SIGTERM (a pod deleted in a rollout): the other replica
    takes over at its next try, not after the 15 s lease runs out."""
    clock = Clock()
    a = LeaderElector(leases(), identity="a", lease_seconds=15, renew_seconds=10, clock=clock)
    b = LeaderElector(leases(), identity="b", lease_seconds=15, renew_seconds=10, clock=clock)
    assert a.is_leader() and not b.is_leader()
    a.release()
    clock.t += 1
    assert b.is_leader() and leases().read().holder == "b"
