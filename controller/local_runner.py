"""The embedded runner: queued rows -> jobimage subprocesses, one per GPU (or one on CPU).

It speaks the same job contract as the Kubernetes path (manifest in object
storage, JOB_COMPLETION_INDEX, results read back). Each job process holds an
exclusive flock on its job's lock file for as long as it lives, so after a
crash of the server the restarted runner can tell a job that is still running
(adopt it and wait) from one that died (run its unfinished items again): a
video never runs twice at once and is never lost.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlmodel import Session, col, select

from controller.metrics import RunMetrics
from core.items import item_for
from core.gpus import visible_gpus
from controller.results import apply_progress, settle
from jobcontract.errors import StorageError
from jobcontract.records import ExitCode, Manifest, write_manifest
from jobcontract.storage import ObjectStore
from core import crud
from core.db import session_for
from core.models import Video
from core.settings import Settings
from core.status import VideoStatus

log = logging.getLogger("t2v.runner")

# After storage refused a job's manifest, dispatch waits this long: a dead MinIO is not hammered
# from every pass (each failed write already takes seconds of client retries), a blip costs seconds.
DISPATCH_PAUSE_AFTER_STORAGE_ERROR_S = 5.0
# What a job process gets to checkpoint its items between SIGTERM and SIGKILL when the runner
# stops: Kubernetes' default grace period; a denoising step takes seconds at most.
STOP_GRACE_S = 30.0


@dataclass
class Job:
    """A job process this runner started or adopted."""

    name: str
    video_ids: list[str]
    slot: int
    proc: subprocess.Popen | None = None  # None when adopted after a restart
    started: float = field(default_factory=time.time)
    kill_reason: str | None = None

    def exit_code(self, lock_path: Path) -> int | None:
        """The exit code if finished, None while running (adopted jobs: from the lock)."""
        if self.proc is not None:
            return self.proc.poll()
        return None if lock_held(lock_path) else -1


def lock_held(path: Path) -> bool:
    """Whether some live process holds the flock on `path`."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class LocalRunner:
    """Dispatches queued videos to job subprocesses and settles them from their records."""

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
        # The operator metrics of cluster mode under the same names; `t2v serve` adds them to /metrics.
        self.metrics = RunMetrics(settings.db_url)
        self._stop = threading.Event()
        self._dispatch_paused_until = 0.0  # monotonic; set when storage refused a manifest

    def prepare(self) -> None:
        """Build the tiny model once if it is missing, before any job needs it."""
        from core.catalog import available_models

        if "tiny" in available_models(self.settings):
            from jobimage.models.tiny import ensure_tiny_model

            ensure_tiny_model(self.settings.models_path)

    # ---- the one step -------------------------------------------------------------------------

    def reconcile_once(self) -> None:
        """Look at the DB and the processes once and converge; safe to call at any moment."""
        with session_for(self.settings.db_url) as session:
            self._collect(session)
            self._progress(session)
            self._stop_cancelled(session)
            self._recover(session)
            self._dispatch(session)

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
        """End the loop; by default stop job processes too, as a kubelet does: SIGTERM, then SIGKILL
        after `grace_s`. Items denoising save their checkpoints; they run again on restart from there."""
        self._stop.set()
        if not kill_jobs:
            return
        jobs = list(self.jobs.values())
        for job in jobs:
            job.kill_reason = "runner stopped"
            self._signal(job, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for job in jobs:
            while job.exit_code(self._lock(job.name)) is None and time.monotonic() < deadline:
                time.sleep(0.05)
        for job in jobs:
            if job.exit_code(self._lock(job.name)) is None:
                self._kill(job, "runner stopped")

    # ---- steps --------------------------------------------------------------------------------

    def _lock(self, name: str) -> Path:
        return self.state_dir / f"{name}.lock"

    def _collect(self, session: Session) -> None:
        for job in list(self.jobs.values()):
            code = job.exit_code(self._lock(job.name))
            if code is None:
                continue
            del self.jobs[job.name]
            reason = job.kill_reason or (f"job process exited with code {code}" if job.proc is not None else
                                         "job process (adopted after a restart) ended without a final result")
            retry = code not in (ExitCode.BAD_SETUP, ExitCode.BAD_ITEM) or job.kill_reason is not None
            outcomes = {}
            videos = self._videos(session, job.video_ids)
            for video in videos:
                outcomes[video.id] = settle(session, store=self.store, video=video, exit_reason=reason,
                                            retry_allowed=retry, max_attempts=self.settings.max_attempts)
            session.commit()
            for video in videos:
                self.metrics.settled(video, outcomes[video.id])
            log.info("job finished", extra={"job": job.name, "exit_code": code, "outcomes": outcomes})

    def _progress(self, session: Session) -> None:
        ids = [v for job in self.jobs.values() for v in job.video_ids]
        changed = False
        for video in self._videos(session, ids):
            changed |= apply_progress(session, store=self.store, video=video)
        if changed:
            session.commit()

    def _stop_cancelled(self, session: Session) -> None:
        for job in self.jobs.values():
            if job.kill_reason:
                continue
            videos = self._videos(session, job.video_ids)
            if any(v.status == VideoStatus.cancelled for v in videos):
                self._kill(job, "a video of this job was cancelled")

    def _recover(self, session: Session) -> None:
        """Active rows that name a job this runner does not know: adopt it if alive, else run again."""
        rows = session.exec(select(Video).where(
            col(Video.status).in_([VideoStatus.queued.value, VideoStatus.in_progress.value]),
            col(Video.job_name).is_not(None))).all()
        orphans: dict[str, list[Video]] = {}
        for video in rows:
            if video.job_name not in self.jobs:
                orphans.setdefault(video.job_name, []).append(video)
        for name, videos in orphans.items():
            if lock_held(self._lock(name)):
                log.info("adopting running job", extra={"job": name})
                self.jobs[name] = Job(name=name, video_ids=[v.id for v in videos], slot=self._free_slot())
                continue
            outcomes = [settle(session, store=self.store, video=video, exit_reason="its job process died",
                               retry_allowed=True, max_attempts=self.settings.max_attempts + 1) for video in videos]
            session.commit()
            for video, outcome in zip(videos, outcomes, strict=True):
                self.metrics.settled(video, outcome)
            log.info("recovered videos of a dead job", extra={"job": name, "videos": [v.id for v in videos]})

    def _dispatch(self, session: Session) -> None:
        while len(self.jobs) < self.slots and time.monotonic() >= self._dispatch_paused_until:
            waiting = session.exec(select(Video).where(Video.status == VideoStatus.queued.value,
                                                       col(Video.job_name).is_(None))
                                   .order_by((Video.priority != "interactive"), Video.seq)
                                   .limit(self.settings.items_per_job * self.slots)).all()
            if not waiting:
                return
            # Each job process loads the model once: when more videos wait than there are free slots,
            # a job takes several of the same model (up to items_per_job), oldest first.
            free = self.slots - len(self.jobs)
            take = min(self.settings.items_per_job, max(1, -(-len(waiting) // free)))
            head = waiting[0]
            group = [v for v in waiting if v.model == head.model][:take]
            self._start(session, group)

    # ---- helpers ------------------------------------------------------------------------------

    def _videos(self, session: Session, ids: list[str]) -> list[Video]:
        if not ids:
            return []
        session.expire_all()
        return list(session.exec(select(Video).where(col(Video.id).in_(ids)).order_by(Video.seq)))

    def _free_slot(self) -> int:
        used = {j.slot for j in self.jobs.values()}
        return next(i for i in range(len(self.jobs) + 1) if i not in used)

    def _start(self, session: Session, videos: list[Video]) -> None:
        now = time.time()
        name = f"local-{videos[0].id.removeprefix('video_')[:12]}-{videos[0].attempt + 1}"
        claimed = crud.claim_unit(session, videos=videos, job_name=name, now=now)
        session.commit()
        if not claimed:
            return
        claimed = self._videos(session, [v.id for v in claimed])
        manifest = Manifest(job_name=name, items=[item_for(v, 0) for v in claimed])
        try:
            key = write_manifest(self.store, manifest)
        except StorageError as e:
            # No job ran, so no attempt is spent: the videos wait in the queue until storage is back,
            # instead of burning their attempts in a few passes.
            for video in claimed:
                crud.unclaim(session, video_id=video.id, job_name=name)
            session.commit()
            self._dispatch_paused_until = time.monotonic() + DISPATCH_PAUSE_AFTER_STORAGE_ERROR_S
            log.warning("dispatch postponed: the job manifest could not be stored",
                        extra={"job": name, "videos": [v.id for v in claimed], "error": str(e),
                               "retry_in_s": DISPATCH_PAUSE_AFTER_STORAGE_ERROR_S})
            return
        slot = self._free_slot()
        lock = self._lock(name)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            log.warning("job lock already held; leaving it to recovery", extra={"job": name})
            return
        env = {**os.environ, "T2V_MANIFEST": key, "JOB_COMPLETION_INDEX": "0",
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
        self.jobs[name] = Job(name=name, video_ids=[v.id for v in claimed], slot=slot, proc=proc)
        firsts = {v.id for v in claimed if v.started_at is None}
        for video in claimed:
            crud.transition(session, video=video, to=VideoStatus.in_progress, reason=f"started in job {name}",
                            now=now)
        session.commit()
        # Here one moment is the Job, the admission (a free slot) and the running process.
        self.metrics.job_created([(v.queue, v.created_at) for v in claimed if v.attempt == 1], now=now)
        for video in claimed:
            self.metrics.started(video, first=video.id in firsts, admitted_at=now)
            if video.id in firsts:
                self.metrics.running(video, since=now)
        log.info("job started", extra={"job": name, "videos": [v.id for v in claimed], "pid": proc.pid})

    def _signal(self, job: Job, signum: int) -> None:
        pid = job.proc.pid if job.proc is not None else _read_pid(self.state_dir / f"{job.name}.pid")
        if pid is None:
            return
        try:
            os.killpg(pid, signum)
        except ProcessLookupError:
            pass

    def _kill(self, job: Job, reason: str) -> None:
        job.kill_reason = reason
        self._signal(job, signal.SIGKILL)
        if job.proc is not None:
            job.proc.wait(timeout=30)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None
