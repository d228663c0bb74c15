"""Cluster mode's controller: the generic loop (controller/reconciler.py) over indexed Jobs, acting
only while it holds the Lease, woken by the Job watch.

`run_forever` runs a full pass every resync period; in between it follows only the Jobs the watch
saw change and dispatches new rows, so one change costs one Job's work, not a list of every Job,
Workload and pod (docs/performance.md, cluster mode).
"""

from __future__ import annotations

import logging
import threading
import time

from controller.kube.api import JobApi
from controller.kube.backend import KubeBackend
from controller.kube.pods import PodState
from controller.kube.watch import JobWatch
from controller.metrics import ControllerMetrics
from controller.reconciler import Reconciler
from controller.settings import ControllerSettings
from core.db import session_for
from jobcontract.storage import ObjectStore

log = logging.getLogger("t2v.controller")


class KubeController(Reconciler):
    """Dispatcher and watcher of cluster mode in one reconcile step."""

    backend: KubeBackend
    metrics: ControllerMetrics

    def __init__(self, settings: ControllerSettings, store: ObjectStore, api: JobApi, *,
                 is_leader=lambda: True, watch: JobWatch | None = None,
                 metrics: ControllerMetrics | None = None, release=lambda: None) -> None:
        super().__init__(settings, store, KubeBackend(settings, store, api),
                         metrics=metrics or ControllerMetrics(settings.db_url), is_leader=is_leader)
        self.settings: ControllerSettings = settings
        self.release = release  # gives the Lease up when run_forever ends
        self._leader_since = None  # set when this process becomes the leader
        self._stop = threading.Event()
        self.wake = watch.wake if watch is not None else threading.Event()
        self.watch = watch

    @property
    def api(self) -> JobApi:
        return self.backend.api

    def reconcile_once(self) -> None:
        """One pass: settle, follow, cancel, re-create, dispatch; safe to call at any moment."""
        self._pass(None)

    def _pass(self, changed: dict[str, dict | None] | None, *, dispatch_seconds: float | None = None) -> bool:
        """A full pass (`changed` None: list every Job), or one over just the Jobs in `changed` (name ->
        newest object, None if deleted); then dispatch. True if dispatch stopped at `dispatch_seconds`."""
        if not self._lead():
            return False
        started = time.monotonic()
        follow = self.backend.load(changed)
        counts = dict.fromkeys(PodState.ALL, 0)
        for pod in self.backend.pods.values():
            counts[pod.state] = counts.get(pod.state, 0) + 1
        self.metrics.job_pods(counts)
        with session_for(self.settings.db_url) as session:
            more = self.step(session, only=None if changed is None else set(changed), follow=follow,
                             dispatch_seconds=dispatch_seconds)
        self.metrics.pass_done("full" if changed is None else "changed", time.monotonic() - started, now=time.time())
        return more

    def _lead(self) -> bool:
        """Whether this process acts now; keeps the leader metrics (and their absence) in step."""
        leader = self.is_leader()
        self.metrics.leader.set(1 if leader else 0)
        if not leader:
            self._leader_since = None
            self.metrics.job_pods(None)  # a follower does not look at pods: no stale numbers
        elif self._leader_since is None:
            self._leader_since = time.time()
        return leader

    def run_forever(self) -> None:
        """A full pass every resync period, the watch's changed Jobs and new rows in between, until `stop()`."""
        log.info("kubernetes controller started", extra={"namespace": self.settings.namespace})
        if self.watch is not None:
            threading.Thread(target=self.watch.run, name="t2v-job-watch", daemon=True).start()
        next_full = 0.0
        while not self._stop.is_set():
            self.wake.clear()
            # Taken before a full pass lists: every change taken here is in that list too.
            changed = self.watch.take_changed() if self.watch is not None else None
            more = False
            try:
                full = changed is None or time.monotonic() >= next_full
                more = self._pass(None if full else changed, dispatch_seconds=self.settings.dispatch_slice_seconds)
                if full:  # counted from the end: a full pass slower than the period still leaves room
                    next_full = time.monotonic() + self.settings.resync_seconds
            except Exception:  # noqa: BLE001 - API server or DB hiccup; the next (full) pass converges
                log.exception("controller pass failed")
                next_full = 0.0  # the changes taken above are lost with this pass: list everything next
            if more:
                continue  # a burst of new rows: the next slice, after following what changed meanwhile
            # A Job event wakes us at once; new rows are looked for every dispatch poll (they make no
            # Job event); the full resync runs every period.
            poll = self.settings.dispatch_poll_seconds if self.watch is not None else self.settings.resync_seconds
            self.wake.wait(max(0.0, min(poll, next_full - time.monotonic())))
        self.release()
        self.close()
        log.info("kubernetes controller stopped", extra={"namespace": self.settings.namespace})

    def stop(self) -> None:
        """End the loop after the current pass."""
        self._stop.set()
        self.wake.set()
        if self.watch is not None:
            self.watch.stop()
