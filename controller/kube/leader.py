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
    """LeaseApi over coordination.k8s.io/v1."""

    def __init__(self, namespace: str, name: str) -> None:
        from kubernetes import client

        self.ns, self.name = namespace, name
        self.api = client.CoordinationV1Api()
        self.client = client

    def read(self) -> LeaseRecord | None:
        from kubernetes.client.exceptions import ApiException

        try:
            lease = self.api.read_namespaced_lease(self.name, self.ns)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        s = lease.spec
        renew = s.renew_time.timestamp() if s.renew_time else 0.0
        return LeaseRecord(holder=s.holder_identity, renew_time=renew,
                           lease_seconds=float(s.lease_duration_seconds or 0),
                           version=lease.metadata.resource_version)

    def _body(self, rec: LeaseRecord):
        c = self.client
        t = dt.datetime.fromtimestamp(rec.renew_time, tz=dt.timezone.utc)
        return c.V1Lease(metadata=c.V1ObjectMeta(name=self.name, namespace=self.ns, resource_version=rec.version),
                         spec=c.V1LeaseSpec(holder_identity=rec.holder, renew_time=t, acquire_time=t,
                                            lease_duration_seconds=int(rec.lease_seconds)))

    def create(self, rec: LeaseRecord) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            self.api.create_namespaced_lease(self.ns, self._body(rec))
        except ApiException as e:
            if e.status == 409:
                return False
            raise
        return True

    def update(self, rec: LeaseRecord) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            self.api.replace_namespaced_lease(self.name, self.ns, self._body(rec))
        except ApiException as e:
            if e.status == 409:
                return False
            raise
        return True
