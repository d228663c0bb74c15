"""One active controller: a coordination.k8s.io Lease, taken when free or expired, renewed while held.

Optimistic concurrency (resourceVersion) makes the take-over race-free: of two controllers that see
an expired Lease, only one update succeeds. A leader that cannot renew within the lease stops acting
before another may take over (it checks its own deadline, not the API server's clock).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("t2v.controller")


@dataclass
class LeaseRecord:
    holder: str | None
    renew_time: float  # unix seconds
    lease_seconds: float
    version: str | None = None  # resourceVersion


class LeaseApi(Protocol):
    def read(self) -> LeaseRecord | None: ...

    def create(self, rec: LeaseRecord) -> bool: ...

    def update(self, rec: LeaseRecord) -> bool:
        """Write if `rec.version` is still current; False on a conflict."""


class LeaderElector:
    """`is_leader()` for the reconcile loop; renews at most every `renew_seconds`."""

    def __init__(self, api: LeaseApi, *, identity: str, lease_seconds: float, renew_seconds: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.api, self.identity = api, identity
        self.lease_seconds, self.renew_seconds = lease_seconds, renew_seconds
        self.clock = clock
        self._held_until = 0.0
        self._last_try = -1e18

    def is_leader(self) -> bool:
        """Whether this process may act now (tries to take or renew the Lease when due)."""
        now = self.clock()
        if now - self._last_try >= self.renew_seconds or now >= self._held_until:
            self._last_try = now
            try:
                if self._try(now):
                    self._held_until = now + self.lease_seconds
            except Exception:  # noqa: BLE001 - API server down: keep acting only until our lease runs out
                log.exception("lease renew failed", extra={"identity": self.identity})
        return self.clock() < self._held_until

    def release(self) -> None:
        """Give the Lease up (at shutdown), so another replica takes over now rather than at its expiry."""
        if self.clock() >= self._held_until:
            return
        self._held_until = 0.0
        try:
            cur = self.api.read()
            if cur is not None and cur.holder == self.identity:
                self.api.update(LeaseRecord(holder=None, renew_time=self.clock(), lease_seconds=self.lease_seconds,
                                            version=cur.version))
                log.info("released the controller lease", extra={"identity": self.identity})
        except Exception:  # noqa: BLE001 - it expires on its own
            log.exception("lease release failed", extra={"identity": self.identity})

    def _try(self, now: float) -> bool:
        cur = self.api.read()
        mine = LeaseRecord(holder=self.identity, renew_time=now, lease_seconds=self.lease_seconds)
        if cur is None:
            return self.api.create(mine)
        if cur.holder not in (None, self.identity) and now < cur.renew_time + cur.lease_seconds:
            return False  # someone else holds a live lease
        if cur.holder != self.identity:
            log.info("taking the controller lease", extra={"identity": self.identity, "previous": cur.holder})
        mine.version = cur.version
        return self.api.update(mine)


class KubeLeaseApi:
    """LeaseApi over coordination.k8s.io/v1, as plain dicts.

    Not the client's V1Lease model: it serialises renewTime with isoformat(), which drops the
    fraction at .000000, and the API server refuses such a MicroTime (400), so about one renewal
    in a million failed. Plain dicts let us write the time in the format the server wants.
    """

    GROUP = ("coordination.k8s.io", "v1")

    def __init__(self, namespace: str, name: str) -> None:
        from kubernetes import client

        self.ns, self.name = namespace, name
        self.api = client.CustomObjectsApi()

    def read(self) -> LeaseRecord | None:
        from kubernetes.client.exceptions import ApiException

        try:
            lease = self.api.get_namespaced_custom_object(*self.GROUP, self.ns, "leases", self.name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        s = lease.get("spec") or {}
        renew = dt.datetime.fromisoformat(s["renewTime"]).timestamp() if s.get("renewTime") else 0.0
        return LeaseRecord(holder=s.get("holderIdentity"), renew_time=renew,
                           lease_seconds=float(s.get("leaseDurationSeconds") or 0),
                           version=lease["metadata"].get("resourceVersion"))

    def _body(self, rec: LeaseRecord) -> dict:
        t = dt.datetime.fromtimestamp(rec.renew_time, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        meta = {"name": self.name, "namespace": self.ns}
        if rec.version:
            meta["resourceVersion"] = rec.version
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                "spec": {"holderIdentity": rec.holder, "renewTime": t, "acquireTime": t,
                         "leaseDurationSeconds": int(rec.lease_seconds)}}

    def create(self, rec: LeaseRecord) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            self.api.create_namespaced_custom_object(*self.GROUP, self.ns, "leases", self._body(rec))
        except ApiException as e:
            if e.status == 409:
                return False
            raise
        return True

    def update(self, rec: LeaseRecord) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            self.api.replace_namespaced_custom_object(*self.GROUP, self.ns, "leases", self.name, self._body(rec))
        except ApiException as e:
            if e.status == 409:
                return False
            raise
        return True
