"""The embedded runner of `t2v serve`: the generic loop over job processes on this machine."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from controller.local.backend import LocalBackend
from controller.local.process import Job
from controller.metrics import RunMetrics
from controller.reconciler import Reconciler
from core.db import session_for
from core.settings import Settings
from jobcontract.storage import ObjectStore

log = logging.getLogger("t2v.runner")

# What a job process gets to checkpoint its items between SIGTERM and SIGKILL when the runner
# stops: Kubernetes' default grace period; a denoising step takes seconds at most.
STOP_GRACE_S = 30.0


class LocalRunner(Reconciler):
    """Dispatches queued videos to job subprocesses and settles them from their records."""

    backend: LocalBackend

    def __init__(self, settings: Settings, store: ObjectStore, *, slots: int | None = None,
                 command: list[str] | None = None) -> None:
        # The operator metrics of cluster mode under the same names; `t2v serve` adds them to /metrics.
        super().__init__(settings, store, LocalBackend(settings, store, slots=slots, command=command),
                         metrics=RunMetrics(settings.db_url))
        self._stop = threading.Event()

    # What the queue panel, /metrics and the tests read.
    @property
    def slots(self) -> int:
        return self.backend.slots

    @property
    def gpus(self) -> list[str]:
        return self.backend.gpus

    @property
    def jobs(self) -> dict[str, Job]:
        return self.backend.jobs

    @property
    def state_dir(self) -> Path:
        return self.backend.state_dir

    def _lock(self, name: str) -> Path:
        return self.backend.lock_path(name)

    def prepare(self) -> None:
        """Build the tiny model once if it is missing, before any job needs it."""
        from core.catalog import available_models

        if "tiny" in available_models(self.settings):
            from jobimage.models.tiny import ensure_tiny_model

            ensure_tiny_model(self.settings.models_path)

    def reconcile_once(self) -> None:
        """Look at the DB and the processes once and converge; safe to call at any moment."""
        with session_for(self.settings.db_url) as session:
            self.step(session)

    def run_forever(self) -> None:
        """Call `reconcile_once` until `stop()`; errors are logged and the loop goes on."""
        log.info("runner started", extra={"slots": self.slots, "gpus": self.gpus})
        while not self._stop.is_set():
            try:
                self.reconcile_once()
            except Exception:  # noqa: BLE001 - the loop must survive DB hiccups; the next pass retries
                log.exception("runner pass failed")
            self._stop.wait(self.settings.runner_poll_seconds)

    def stop(self, *, kill_jobs: bool = True, grace_s: float = STOP_GRACE_S) -> None:
        """End the loop; by default stop job processes too (SIGTERM, then SIGKILL after `grace_s`)."""
        self._stop.set()
        if kill_jobs:
            self.backend.stop_all(grace_s)
