"""Lease leader election with an in-memory Lease that enforces resourceVersion like the API server."""

from __future__ import annotations

import copy

from controller.kube.leader import LeaderElector, LeaseRecord


class MemLease:
    def __init__(self) -> None:
        self.rec: LeaseRecord | None = None
        self.rv = 0
        self.down = False

    def read(self):
        if self.down:
            raise ConnectionError("api server down")
        return copy.copy(self.rec)

    def create(self, rec):
        if self.rec is not None:
            return False
        self.rv += 1
        self.rec = LeaseRecord(rec.holder, rec.renew_time, rec.lease_seconds, str(self.rv))
        return True

    def update(self, rec):
        if self.rec is None or rec.version != self.rec.version:
            return False
        self.rv += 1
        self.rec = LeaseRecord(rec.holder, rec.renew_time, rec.lease_seconds, str(self.rv))
        return True


class Clock:
    t = 1000.0

    def __call__(self):
        return self.t


def test_two_controllers_only_one_leads_and_the_other_takes_over_after_expiry() -> None:
    lease, clock = MemLease(), Clock()
    a = LeaderElector(lease, identity="a", lease_seconds=15, renew_seconds=10, clock=clock)
    b = LeaderElector(lease, identity="b", lease_seconds=15, renew_seconds=10, clock=clock)
    assert a.is_leader() and not b.is_leader()
    clock.t += 11
    assert a.is_leader() and not b.is_leader()  # a renewed
    # a dies (stops renewing): b takes over once the lease has run out, not before
    clock.t += 14
    assert not b.is_leader()
    clock.t += 2
    assert b.is_leader()


def test_leader_that_cannot_renew_stops_acting_when_its_lease_ends() -> None:
    lease, clock = MemLease(), Clock()
    a = LeaderElector(lease, identity="a", lease_seconds=15, renew_seconds=10, clock=clock)
    assert a.is_leader()
    lease.down = True
    clock.t += 11
    assert a.is_leader()  # still inside its lease
    clock.t += 5
    assert not a.is_leader()


def test_stale_version_loses_the_race() -> None:
    lease = MemLease()
    lease.create(LeaseRecord("x", 0.0, 15))
    stale = lease.read()
    assert lease.update(LeaseRecord("a", 100.0, 15, stale.version))
    assert not lease.update(LeaseRecord("b", 100.0, 15, stale.version))
