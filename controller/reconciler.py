"""The one dispatch loop of both modes: queued rows -> units of work on a Backend, what the backend
sees -> video status (through controller/table.py).

Level-triggered (STYLE 3): each step reads what the DB and the backend say now and converges, so the
process can be killed at any line and the next step (here or in another replica) finishes the work.
A unit's name is stored on its rows (committed) before the unit is made, so a crash between the two
makes the same unit again, or recovers its videos, instead of running them twice or losing them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from sqlmodel import Session, col, select

from controller.backend import Backend, Made, Postponed, View
from controller.metrics import RunMetrics
from controller.results import apply_progress, settle
from controller.table import Do, Phase, Seen, Step, plan
from core import crud
from core.models import Video
from core.settings import Settings
from core.status import VideoStatus
from jobcontract.storage import ObjectStore

log = logging.getLogger("t2v.controller")

# After a backend postponed a unit (storage refused its manifest), dispatch waits this long: a dead
# MinIO is not hammered from every pass (each failed write already takes seconds of client retries),
# while a blip costs seconds.
DISPATCH_PAUSE_AFTER_STORAGE_ERROR_S = 5.0


class Reconciler:
    """Claims waiting videos, dispatches them to `backend`, follows their units and settles them."""

    def __init__(self, settings: Settings, store: ObjectStore, backend: Backend, *, metrics: RunMetrics,
                 is_leader: Callable[[], bool] = lambda: True) -> None:
        self.settings = settings
        self.store = store
        self.backend = backend
        self.metrics = metrics
        self.is_leader = is_leader
        self._running_seen: set[str] = set()  # videos whose first running pod (process) was counted
        self._leader_since: float | None = time.time()  # when this process last became the one acting
        self._paused_until = 0.0  # monotonic; set when the backend postponed a unit
        self._pool: ThreadPoolExecutor | None = None  # units made side by side (backend.concurrency)

    def step(self, session: Session, *, only: set[str] | None = None, follow: bool = True,
             dispatch_seconds: float | None = None) -> bool:
        """Follow the units (all, or those named in `only`), then dispatch; True if dispatch stopped
        after `dispatch_seconds` with rows left."""
        if follow:
            self._follow(session, only)
        return self._dispatch(session, seconds=dispatch_seconds)

    # ---- backend -> DB ----------------------------------------------------------------------------

    def _follow(self, session: Session, only: set[str] | None) -> None:
        query = select(Video).where(col(Video.job_name).is_not(None))
        if only is not None:
            query = query.where(col(Video.job_name).in_(sorted(only)))
        session.expire_all()  # rows as the DB has them now (a cancel from the API, another replica)
        rows = session.exec(query.order_by(Video.seq)).all()
        by_unit: dict[str, list[Video]] = {}
        for v in rows:
            by_unit.setdefault(v.job_name, []).append(v)
        waiting: list[Video] = []
        for name, videos in by_unit.items():
            if not self.is_leader():
                return  # lost the Lease mid-pass (see _dispatch)
            view = self.backend.observe(name, videos)
            self._apply(session, name, videos, view)
            waiting += [v for v in videos if view.seen[v.id].phase == Phase.waiting]
        if only is None:  # positions move with every unit: once per full pass is enough
            self._positions(session, waiting)
            self.backend.keep_only(set(by_unit))
            self._running_seen &= {v.id for v in rows if VideoStatus(v.status).is_active()}

    def _apply(self, session: Session, name: str, videos: list[Video], view: View) -> None:
        unit = plan([(view.seen[v.id], VideoStatus(v.status)) for v in videos],
                    stop_on_any_cancel=self.backend.stop_on_any_cancel)
        if unit.cancel:
            self.backend.cancel(name, unit.cancel)
            log.info("unit stopped", extra={"job": name, "why": unit.cancel})
        create = [v for v, st in zip(videos, unit.steps, strict=True) if st.do == Do.create]
        admitted = stopped = False
        outcomes: dict[str, str] = {}
        for v, st in zip(videos, unit.steps, strict=True):
            seen = view.seen[v.id]
            if st.do in (Do.start, Do.follow):
                if st.do == Do.start:
                    admitted |= self._start(session, v, st.reason, at=view.admitted_at)
                if seen.node and v.node != seen.node:
                    v.node = seen.node
                    session.add(v)
                apply_progress(session, store=self.store, video=v)
                self._count_running(v, seen)
            elif st.do == Do.requeue:
                if crud.transition(session, video=v, to=VideoStatus.queued, reason=st.reason):
                    self.metrics.preempted(v, reason=seen.cause)
                    stopped = True
            elif st.do == Do.settle:
                if st.late_start:
                    self._start(session, v, f"ran in {self.backend.noun} {name}", at=view.admitted_at)
                outcomes[v.id] = self._settle(session, v, st)
        session.commit()
        now = time.time()
        if admitted:
            self.metrics.watched("admitted", at=view.admitted_at, now=now)
        if stopped:
            self.metrics.watched("suspended", at=view.stopped_at, now=now)
        if view.finished:
            self.metrics.watched("finished", at=view.ended_at, now=now)
        if outcomes:
            log.info("job finished" if view.finished else "job part ended", extra={"job": name, "outcomes": outcomes})
        if create:  # claimed, then the process died before the unit existed
            self._make(session, [(name, create)], commit=False)

    def _start(self, session: Session, video: Video, reason: str, *, at: float | None) -> bool:
        """queued -> in_progress because its unit was admitted; counts the start (and a first admission)."""
        first = video.started_at is None
        if not crud.transition(session, video=video, to=VideoStatus.in_progress, reason=reason, queue_position=None):
            return False
        self.metrics.started(video, first=first, admitted_at=at or time.time())
        return True

    def _settle(self, session: Session, video: Video, st: Step) -> str:
        """results.settle with this loop's attempt budget, counted in the metrics."""
        budget = self.settings.max_attempts + (1 if st.spare_attempt else 0)
        outcome = settle(session, store=self.store, video=video, exit_reason=st.reason, retry_allowed=st.retry,
                         max_attempts=budget)
        self.metrics.settled(video, outcome)
        return outcome

    def _count_running(self, video: Video, seen: Seen) -> None:
        """Submit -> running, once per video: the first pod of its first attempt seen running by this
        leader. A pod that started before this process led was counted by the leader before (or is
        lost to a crash); a retry's time from submit would include the failed attempt."""
        if seen.running_since is None or video.attempt != 1 or video.id in self._running_seen:
            return
        self._running_seen.add(video.id)
        # The API server's times are whole seconds: a pod that started in our first second counts.
        if self._leader_since is not None and seen.running_since >= int(self._leader_since) - 1:
            self.metrics.running(video, since=seen.running_since)

    def _positions(self, session: Session, waiting: list[Video]) -> None:
        queued = [v for v in waiting if v.status == VideoStatus.queued]
        places = self.backend.positions(queued)
        if places is None:
            return
        for v in queued:
            pos = places.get(v.id)
            if v.queue_position != pos:
                v.queue_position = pos
                session.add(v)
        session.commit()

    # ---- DB -> backend ----------------------------------------------------------------------------

    def _dispatch(self, session: Session, *, seconds: float | None = None) -> bool:
        """Claim queued rows and make their units; True if it stopped after `seconds` with rows left."""
        start = time.monotonic()
        while time.monotonic() >= self._paused_until:
            free = self.backend.capacity()
            if free is not None and free <= 0:
                return False
            waiting = session.exec(select(Video).where(Video.status == VideoStatus.queued.value,
                                                       col(Video.job_name).is_(None))
                                   .order_by((Video.priority != "interactive"), Video.seq)
                                   .limit(self.backend.waiting_limit())).all()
            if not waiting:
                return False
            # Units claimed in one transaction and then made side by side, `concurrency` at a time.
            claims: list[tuple[str, list[Video]]] = []
            for unit in self.backend.units(list(waiting), free):
                # A pass making hundreds of Jobs outlasts the Lease unless it renews as it goes, and one
                # that cannot renew must stop before another replica takes over: ask before each unit.
                if not self.is_leader():
                    # Units claimed and committed earlier are the leader's to make (Phase.missing); the
                    # claims of this round were never committed, so those videos simply wait again.
                    session.rollback()
                    return False
                if seconds is not None and time.monotonic() - start > seconds:
                    self._make(session, claims)
                    return True  # a burst: let the loop follow what changed meanwhile, then go on
                name = self.backend.unit_name(unit)
                claimed = crud.claim_unit(session, videos=unit, job_name=name, now=time.time())
                if claimed:
                    claims.append((name, claimed))
                if len(claims) >= self.backend.concurrency:
                    self._make(session, claims)
                    claims = []
            self._make(session, claims)
            if free is None:
                return False  # a scheduler admits: one round per pass
        return False

    def _make(self, session: Session, claims: list[tuple[str, list[Video]]], *, commit: bool = True) -> None:
        """Commit the claims (the names are on the rows before any unit exists), then make the units:
        one by one, or side by side; the first failure is raised once all have ended."""
        if commit:
            session.commit()
        if not claims:
            return
        ready = [(name, videos, [(v.queue, v.created_at) for v in videos if v.attempt == 1],
                  self.backend.prepare(name, videos)) for name, videos in claims]
        if len(ready) == 1 or self.backend.concurrency <= 1:
            results: list[Made | BaseException] = [_call(make) for *_, make in ready]
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.backend.concurrency, thread_name_prefix="t2v-create")
            futures: list[Future] = [self._pool.submit(_call, make) for *_, make in ready]
            results = [f.result() for f in futures]
        failure: BaseException | None = None
        for (name, videos, firsts, _), made in zip(ready, results, strict=True):
            if isinstance(made, Postponed):
                self._postpone(session, name, videos, made)
            elif isinstance(made, BaseException):
                failure = failure or made
            else:
                self._made(session, name, videos, firsts, made)
        if failure is not None:
            raise failure

    def _made(self, session: Session, name: str, videos: list[Video], firsts: list[tuple[str, float]],
              made: Made) -> None:
        now = time.time()
        if made.created:
            self.metrics.job_created(firsts, now=now)
        log.info("job created" if made.created else "job already existed",
                 extra={"job": name, "videos": [v.id for v in videos]})
        if made.running_since is None:
            return
        # Here one moment is the unit, the admission (a free slot) and the running process.
        firsts_ids = {v.id for v in videos if v.started_at is None}
        for v in videos:
            crud.transition(session, video=v, to=VideoStatus.in_progress, reason=f"started in job {name}",
                            now=made.running_since)
        session.commit()
        for v in videos:
            self.metrics.started(v, first=v.id in firsts_ids, admitted_at=made.running_since)
            if v.id in firsts_ids:
                self._running_seen.add(v.id)
                self.metrics.running(v, since=made.running_since)

    def _postpone(self, session: Session, name: str, videos: list[Video], e: Postponed) -> None:
        # No unit ran, so no attempt is spent: the videos wait in the queue until storage is back,
        # instead of burning their attempts in a few passes.
        for v in videos:
            crud.unclaim(session, video_id=v.id, job_name=name)
        session.commit()
        self._paused_until = time.monotonic() + DISPATCH_PAUSE_AFTER_STORAGE_ERROR_S
        log.warning("dispatch postponed: the job manifest could not be stored",
                    extra={"job": name, "videos": [v.id for v in videos], "error": str(e.__cause__ or e),
                           "retry_in_s": DISPATCH_PAUSE_AFTER_STORAGE_ERROR_S})

    def close(self) -> None:
        """Let the creation threads go (they are idle between passes)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)


def _call(make: Callable[[], Made]) -> Made | BaseException:
    try:
        return make()
    except Exception as e:  # noqa: BLE001 - handed back; the caller raises the first after all ended
        return e

