"""The Backend of embedded mode: a unit is one jobimage subprocess, one per GPU (or one on the CPU).

It speaks the same job contract as the Kubernetes path (manifest in object storage,
JOB_COMPLETION_INDEX, results read back); controller/local/process.py says how a restarted server
tells a live job process from a dead one, so a video never runs twice at once and is never lost.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from controller.backend import Made, Postponed, View
from controller.local.process import Job, lock_held, read_pid, take_lock
from controller.table import Phase, Seen
from core.gpus import visible_gpus
from core.items import item_for
from core.models import Video
from core.settings import Settings
from jobcontract.errors import StorageError
from jobcontract.records import ExitCode, Manifest, write_manifest
from jobcontract.storage import ObjectStore

log = logging.getLogger("t2v.runner")

# How long a killed job process may take to let its lock go before the pass gives up (and retries).
KILL_WAIT_S = 30.0


class LocalBackend:
    """Job processes on this machine, at most `slots` at once."""

    noun = "job process"
    concurrency = 1  # one process start at a time: each takes a slot and a GPU
    stop_on_any_cancel = True  # a process runs its items in turn: a cancelled one is stopped by stopping it

    def __init__(self, settings: Settings, store: ObjectStore, *, slots: int | None = None,
                 command: list[str] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.gpus = visible_gpus()
        self.slots = slots or settings.runner_slots or max(1, len(self.gpus))
        self.command = command or [sys.executable, "-m", "jobimage"]
        self.state_dir = (settings.data_dir / "runner").resolve()
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.jobs: dict[str, Job] = {}

    def lock_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.lock"

    # ---- dispatch -----------------------------------------------------------------------------

    def capacity(self) -> int:
        return self.slots - len(self.jobs)

    def waiting_limit(self) -> int:
        return self.settings.items_per_job * self.slots

    def units(self, waiting: list[Video], free: int | None) -> list[list[Video]]:
        # Each job process loads the model once: when more videos wait than there are free slots,
        # a job takes several of the same model (up to items_per_job), oldest first.
        take = min(self.settings.items_per_job, max(1, -(-len(waiting) // max(1, free or 1))))
        head = waiting[0]
        return [[v for v in waiting if v.model == head.model][:take]]

    def unit_name(self, videos: list[Video]) -> str:
        return f"local-{videos[0].id.removeprefix('video_')[:12]}-{videos[0].attempt + 1}"

    def prepare(self, name: str, videos: list[Video]) -> Callable[[], Made]:
        manifest = Manifest(job_name=name, items=[item_for(v, 0) for v in videos])
        ids = [v.id for v in videos]

        def make() -> Made:
            try:
                key = write_manifest(self.store, manifest)
            except StorageError as e:
                raise Postponed(f"the manifest of {name} could not be stored: {e}") from e
            return self._spawn(name, ids, key)
        return make

    def _free_slot(self) -> int:
        used = {j.slot for j in self.jobs.values()}
        return next(i for i in range(len(self.jobs) + 1) if i not in used)

    def _spawn(self, name: str, ids: list[str], manifest_key: str) -> Made:
        slot = self._free_slot()
        fd = take_lock(self.lock_path(name))
        if fd is None:
            log.warning("job lock already held; leaving it to recovery", extra={"job": name})
            return Made(created=False)
        env = {**os.environ, "T2V_MANIFEST": manifest_key, "JOB_COMPLETION_INDEX": "0",
               "T2V_STORAGE_URL": self.settings.objects_url, "T2V_MODEL_DIR": str(self.settings.models_path),
               "T2V_JOB_LOCK_FD": str(fd), "PYTHONUNBUFFERED": "1"}
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
        else:
            env.setdefault("T2V_DEVICES", "cpu")
        logf = open(self.state_dir / "logs" / f"{name}.log", "ab")
        try:
            # The child inherits the locked fd: the lock lives exactly as long as the job process.
            proc = subprocess.Popen(self.command, env=env, stdout=logf, stderr=subprocess.STDOUT,
                                    pass_fds=(fd,), start_new_session=True)
        finally:
            os.close(fd)
            logf.close()
        (self.state_dir / f"{name}.pid").write_text(str(proc.pid))
        job = Job(name=name, video_ids=ids, slot=slot, proc=proc)
        self.jobs[name] = job
        log.info("job started", extra={"job": name, "videos": ids, "pid": proc.pid})
        return Made(created=True, running_since=job.started)

    # ---- following ----------------------------------------------------------------------------

    def observe(self, name: str, videos: list[Video]) -> View:
        job = self.jobs.get(name)
        if job is None:  # a job a previous server started: adopt it if it lives
            if not lock_held(self.lock_path(name)):
                log.info("recovering the videos of a dead job", extra={"job": name, "videos": [v.id for v in videos]})
                return _all(videos, Seen(Phase.lost, "its job process died"))
            log.info("adopting running job", extra={"job": name})
            self.jobs[name] = job = Job(name=name, video_ids=[v.id for v in videos], slot=self._free_slot())
        code = job.exit_code(self.lock_path(name))
        if code is None:
            return _all(videos, Seen(Phase.running, f"running in job process {name}"))
        del self.jobs[name]
        reason = job.kill_reason or (f"job process exited with code {code}" if job.proc is not None else
                                     "job process (adopted after a restart) ended without a final result")
        retry = code not in (ExitCode.BAD_SETUP, ExitCode.BAD_ITEM) or job.kill_reason is not None
        log.info("job process ended", extra={"job": name, "exit_code": code})
        view = _all(videos, Seen(Phase.ended, reason, retry=retry))
        view.finished = True
        return view

    def cancel(self, name: str, reason: str) -> None:
        """SIGKILL the job's process group and wait until its lock is free (it ran its last step)."""
        job = self.jobs.get(name)
        if job is None:
            return
        self.kill(job, reason)
        deadline = time.monotonic() + KILL_WAIT_S
        while job.exit_code(self.lock_path(name)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job process {name} still holds its lock {KILL_WAIT_S} s after SIGKILL")
            time.sleep(0.05)
        del self.jobs[name]

    def positions(self, queued: list[Video]) -> None:
        return None  # the queue panel computes places in line in embedded mode

    def keep_only(self, names: set[str]) -> None:
        pass  # nothing is remembered beyond `jobs`, which observe() keeps

    # ---- stopping -----------------------------------------------------------------------------

    def signal(self, job: Job, signum: int) -> None:
        pid = job.proc.pid if job.proc is not None else read_pid(self.state_dir / f"{job.name}.pid")
        if pid is None:
            return
        try:
            os.killpg(pid, signum)
        except ProcessLookupError:
            pass

    def kill(self, job: Job, reason: str) -> None:
        job.kill_reason = reason
        self.signal(job, signal.SIGKILL)
        if job.proc is not None:
            job.proc.wait(timeout=KILL_WAIT_S)

    def stop_all(self, grace_s: float) -> None:
        """As a kubelet does: SIGTERM, then SIGKILL after `grace_s`. Items denoising save their
        checkpoints; they run again on restart from there."""
        jobs = list(self.jobs.values())
        for job in jobs:
            job.kill_reason = "runner stopped"
            self.signal(job, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for job in jobs:
            while job.exit_code(self.lock_path(job.name)) is None and time.monotonic() < deadline:
                time.sleep(0.05)
        for job in jobs:
            if job.exit_code(self.lock_path(job.name)) is None:
                self.kill(job, "runner stopped")


def _all(videos: list[Video], seen: Seen) -> View:
    return View(seen={v.id: seen for v in videos})
