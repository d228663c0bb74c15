"""The generic loop of cluster mode: queued rows -> indexed Jobs, Job states -> DB status.

Level-triggered (STYLE 3): each pass reads what the DB and the API server say now and converges, so
the controller can be killed at any line and the next pass (in this or another replica) finishes the
work. The Job name is stored on the rows before the Job is created, so a crash between the two
re-creates the same Job instead of a second one.

`run_forever` runs a full pass every resync period; in between it follows only the Jobs the watch
saw change and dispatches new rows, so one change costs one Job's work, not a list of every Job,
Workload and pod (docs/performance.md, cluster mode).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from itertools import groupby

from sqlmodel import Session, col, select

from controller.kube.api import JobApi
from controller.kube.jobs import (
    Unit,
    build_job,
    cluster_queue,
    event_time,
    failed_indexes,
    finished_indexes,
    index_of,
    job_name,
    local_queue,
    read_state,
    workload_stop,
    workload_why,
)
from controller.kube.pods import PodState, PodView
from controller.kube.watch import JobWatch
from controller.metrics import ControllerMetrics
from core.items import item_for
from controller.results import apply_progress, settle
from controller.settings import ControllerSettings
from jobcontract.errors import ContractError
from jobcontract.records import Manifest, manifest_key, read_manifest, write_manifest
from jobcontract.storage import ObjectStore
from core import crud
from core.db import session_for
from core.models import Video
from core.status import VideoStatus

log = logging.getLogger("t2v.controller")

ACTIVE = [VideoStatus.queued.value, VideoStatus.in_progress.value]


def _epoch(rfc3339: str) -> float:
    from datetime import datetime  # noqa: PLC0415

    return datetime.fromisoformat(rfc3339).timestamp() if rfc3339 else time.time()


class KubeController:
    """Dispatcher and watcher of cluster mode in one reconcile step."""

    def __init__(self, settings: ControllerSettings, store: ObjectStore, api: JobApi, *,
                 is_leader=lambda: True, watch: JobWatch | None = None,
                 metrics: ControllerMetrics | None = None, release=lambda: None) -> None:
        self.settings = settings
        self.release = release  # gives the Lease up when run_forever ends
        self.store = store
        self.api = api
        self.is_leader = is_leader
        self.metrics = metrics or ControllerMetrics(settings.db_url)
        self._stop = threading.Event()
        self.wake = watch.wake if watch is not None else threading.Event()
        self.watch = watch
        self._pods: dict[tuple[str, int], PodView] = {}  # (Job, completion index) -> its live pod
        self._running_seen: set[str] = set()  # videos whose first running pod was counted
        self._leader_since: float | None = None  # when this process last became the leader
        self._workloads: dict[str, dict] | None = None  # this pass's, listed when first needed
        self._workload_names: dict[str, str] = {}  # Job -> its Workload's name (fixed for the Job's life)
        self._indexes: dict[str, dict[str, int]] = {}  # Job -> video id -> completion index (manifest)
        self._queues_made: set[str] = set()  # tenant LocalQueues known to exist
        self._pool: ThreadPoolExecutor | None = None  # Job creations side by side (dispatch_concurrency)

    def reconcile_once(self) -> None:
        """One pass: settle, follow, cancel, re-create, dispatch; safe to call at any moment."""
        self._pass(None)

    def _pass(self, changed: dict[str, dict | None] | None, *, dispatch_seconds: float | None = None) -> bool:
        """A full pass (`changed` None: list every Job), or one over just the Jobs in `changed` (name ->
        newest object, None if deleted); then dispatch. True if dispatch stopped at `dispatch_seconds`."""
        if not self._lead():
            return False
        started = time.monotonic()
        jobs = self.api.list_jobs() if changed is None else changed
        if changed is None:
            # Tenant LocalQueues are ensured again once per full pass: one an admin deleted (or a
            # namespace re-created) comes back within a resync, not at the next restart.
            self._queues_made.clear()
        if jobs:
            self._pods = self.api.job_pods(model_label=self.settings.model_ready_node_label)
        elif changed is None:
            self._pods = {}
        counts = dict.fromkeys(PodState.ALL, 0)
        for pod in self._pods.values():
            counts[pod.state] = counts.get(pod.state, 0) + 1
        self.metrics.job_pods(counts)
        self._workloads = None
        with session_for(self.settings.db_url) as session:
            if jobs or changed is None:
                self._follow(session, jobs, only=None if changed is None else set(changed))
            more = self._dispatch(session, jobs, seconds=dispatch_seconds)
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
        log.info("kubernetes controller stopped", extra={"namespace": self.settings.namespace})

    def stop(self) -> None:
        """End the loop after the current pass."""
        self._stop.set()
        self.wake.set()
        if self.watch is not None:
            self.watch.stop()

    # ---- watcher: cluster -> DB ---------------------------------------------------------------

    def _follow(self, session: Session, jobs: dict[str, dict], only: set[str] | None = None) -> None:
        query = select(Video).where(col(Video.job_name).is_not(None))
        if only is not None:  # between full passes: the Jobs the watch saw change
            query = query.where(col(Video.job_name).in_(sorted(only)))
        rows = session.exec(query.order_by(Video.seq)).all()
        by_job: dict[str, list[Video]] = {}
        for v in rows:
            by_job.setdefault(v.job_name, []).append(v)
        waiting: list[Video] = []
        for name, videos in by_job.items():
            if not self.is_leader():
                return  # lost the Lease mid-pass (see _dispatch)
            active = [v for v in videos if VideoStatus(v.status).is_active()]
            job = jobs.get(name)
            if not active:
                # Cancelled (or otherwise finished) while its Job lives: stop the Job, then forget it.
                if job is not None and not read_state(job).finished:
                    self.api.delete_job(name)
                    log.info("deleted job of cancelled videos", extra={"job": name})
                for v in videos:
                    self._settle(session, v, "cancelled", retry_allowed=False)
                session.commit()
                continue
            if job is None:
                if all(v.status == VideoStatus.queued for v in active):
                    self._create(session, name, active)  # claimed, then crashed before the Job existed
                    continue
                for v in active:
                    self._settle(session, v, f"its Job {name} disappeared")
                session.commit()
                continue
            state = read_state(job)
            if not state.finished and (ended := finished_indexes(job)):
                # Indexes end one by one: settle their videos now, not when the last index ends.
                active = self._settle_ended(session, name, job, active, ended)
                if not active:
                    continue
            if state.finished:
                for v in active:
                    if v.status == VideoStatus.queued:  # ran and ended between two passes
                        self._start(session, v, job, reason=f"ran in Job {name}")
                why = self._pod_endings(name) if state.failed else {}
                indexes = (self._item_indexes(name) or {}) if why else {}
                outcomes = {v.id: self._settle(session, v, why.get(indexes.get(v.id, -1), state.reason))
                            for v in videos}
                session.commit()
                self.metrics.watched("finished", at=event_time(job, "finished"), now=time.time())
                log.info("job finished", extra={"job": name, "outcomes": outcomes})
            elif state.running:
                indexes = self._item_indexes(name) or {}
                if self._fail_if_stuck(session, name, active, indexes):
                    continue
                pods = {v.id: self._pods.get((name, indexes.get(v.id, -1))) for v in active}
                for v in active:
                    node = pods[v.id].node if pods[v.id] else None
                    if node and v.node != node:
                        v.node = node
                        session.add(v)
                admitted = False
                for v in active:
                    if v.status == VideoStatus.queued:
                        admitted |= self._start(session, v, job, reason=f"admitted by Kueue; running in Job {name}")
                    apply_progress(session, store=self.store, video=v)
                session.commit()
                if admitted:
                    self.metrics.watched("admitted", at=event_time(job, "admitted"), now=time.time())
                self._count_running(active, pods)
            elif state.suspended:
                waiting.extend(active)
                stopped_at: float | None = None
                stopped = False
                for v in active:
                    if v.status == VideoStatus.in_progress:
                        # Kueue suspended an admitted Job: preempted or evicted; the same Job resumes.
                        workload = self._workload(name)
                        why = workload_why(workload) or f"preempted or evicted ({state.reason})"
                        if crud.transition(session, video=v, to=VideoStatus.queued, reason=f"{why}; queued again"):
                            reason, stopped_at = workload_stop(workload)
                            self.metrics.preempted(v, reason=reason)
                            stopped = True
                session.commit()
                if stopped:
                    self.metrics.watched("suspended", at=stopped_at, now=time.time())
        if only is None:  # positions move with every Job: once per full pass is enough
            self._positions(session, waiting)
            self._indexes = {k: v for k, v in self._indexes.items() if k in by_job}
            self._workload_names = {k: v for k, v in self._workload_names.items() if k in by_job}
            self._running_seen &= {v.id for v in rows if VideoStatus(v.status).is_active()}

    def _start(self, session: Session, video: Video, job: dict, *, reason: str) -> bool:
        """queued -> in_progress because its Job was admitted; counts the start (and a first admission)."""
        first = video.started_at is None
        if not crud.transition(session, video=video, to=VideoStatus.in_progress, reason=reason, queue_position=None):
            return False
        self.metrics.started(video, first=first, admitted_at=event_time(job, "admitted") or time.time())
        return True

    def _settle(self, session: Session, video: Video, reason: str, *, retry_allowed: bool = True) -> str:
        """results.settle with this controller's attempt budget, counted in the metrics."""
        outcome = settle(session, store=self.store, video=video, exit_reason=reason, retry_allowed=retry_allowed,
                         max_attempts=self.settings.max_attempts)
        self.metrics.settled(video, outcome)
        return outcome

    def _count_running(self, active: list[Video], pods: dict[str, PodView | None]) -> None:
        """Submit -> running, once per video: the first pod of its first attempt seen running by this
        leader. A pod that started before this process led was counted by the leader before (or is
        lost to a crash); a retry's time from submit would include the failed attempt."""
        for v in active:
            pod = pods.get(v.id)
            if pod is None or pod.running_since is None or v.attempt != 1 or v.id in self._running_seen:
                continue
            self._running_seen.add(v.id)
            # The API server's times are whole seconds: a pod that started in our first second counts.
            if self._leader_since is not None and pod.running_since >= int(self._leader_since) - 1:
                self.metrics.running(v, since=pod.running_since)

    def _fail_if_stuck(self, session: Session, name: str, active: list[Video], indexes: dict[str, int]) -> bool:
        """A pod that cannot start (image not pullable, broken spec) past the grace period: its Job is
        deleted and its videos fail with the kubelet's words, instead of holding GPUs in Kueue for ever."""
        now = time.time()
        stuck = [p for (job, _), p in self._pods.items() if job == name and p.trouble
                 and now - _epoch(p.created) >= self.settings.pod_start_grace_seconds]
        if not stuck:
            return False
        self.api.delete_job(name)
        for v in active:
            self._settle(session, v, stuck[0].trouble, retry_allowed=False)
        session.commit()
        log.warning("job pod cannot start; job deleted", extra={"job": name, "why": stuck[0].trouble})
        return True

    def _pod_endings(self, name: str) -> dict[int, str]:
        """How a failed Job's pods ended, by index (a pod OOM-killed at its limit leaves no result to say so)."""
        try:
            return self.api.failed_pod_reasons(name)
        except Exception as e:  # noqa: BLE001 - the Job's own reason still settles its videos
            log.warning("could not read a failed job's pods", extra={"job": name, "error": str(e)})
            return {}

    def _workload(self, job: str) -> dict | None:
        """The Workload of `job`; the first call in a pass lists them all (they are large: pod templates)."""
        if self._workloads is None:
            self._workloads = self.api.job_workloads()
            self._workload_names.update({j: (w.get("metadata") or {}).get("name", "")
                                         for j, w in self._workloads.items()})
        return self._workloads.get(job)

    def _item_indexes(self, name: str) -> dict[str, int] | None:
        """Video id -> completion index of a Job, from its manifest (read once per Job); None if unreadable."""
        if name not in self._indexes:
            try:
                manifest = read_manifest(self.store, manifest_key(name))
            except ContractError as e:  # storage down: the Job's end settles its videos instead
                log.warning("could not read a job's manifest", extra={"job": name, "error": str(e)})
                return None
            self._indexes[name] = {i.video_id: i.index for i in manifest.items}
        return self._indexes[name]

    def _settle_ended(self, session: Session, name: str, job: dict, active: list[Video], ended: set[int]
                      ) -> list[Video]:
        """Settle the videos of Job indexes that ended; returns the videos still active in this Job."""
        indexes = self._item_indexes(name)
        if indexes is None:
            return active
        for v in active:
            index = indexes.get(v.id)
            if index not in ended:
                continue
            if v.status == VideoStatus.queued:  # ran and ended between two passes
                self._start(session, v, job, reason=f"ran in Job {name}")
            why = f"index {index} of Job {name} ended"
            if index in failed_indexes(job):
                why = self._pod_endings(name).get(index, why)
            outcome = self._settle(session, v, why)
            log.info("job index ended", extra={"job": name, "index": index, "video_id": v.id, "outcome": outcome})
        session.commit()
        return [v for v in active if VideoStatus(v.status).is_active() and v.job_name == name]

    def _positions(self, session: Session, waiting: list[Video]) -> None:
        # Kueue's own answer first (visibility API: place in the ClusterQueue of the Job's Workload);
        # where it is not served, Kueue's order (priority, then creation time) over the waiting Jobs.
        queued = [v for v in waiting if v.status == VideoStatus.queued]
        queues = sorted({local_queue(self.settings, v.tenant, v.queue) for v in queued})
        kueue = self.api.pending_positions(queues) if queued else {}
        if kueue:
            missing = next((v.job_name for v in queued if v.job_name not in self._workload_names), None)
            if missing is not None:
                self._workload(missing)  # new Jobs since the last list: list the Workloads once
            places = {v.id: kueue.get(self._workload_names.get(v.job_name, "")) for v in queued}
        else:
            ordered = sorted(queued, key=lambda v: (v.priority != "interactive", v.seq))
            places = {v.id: pos for pos, v in enumerate(ordered, start=1)}
        for v in queued:
            pos = places.get(v.id)
            if v.queue_position != pos:
                v.queue_position = pos
                session.add(v)
        session.commit()

    # ---- dispatcher: DB -> cluster ------------------------------------------------------------

    def _dispatch(self, session: Session, jobs: dict[str, dict], *, seconds: float | None = None) -> bool:
        """Claim queued rows and create their Jobs; True if it stopped after `seconds` with rows left."""
        start = time.monotonic()
        waiting = session.exec(select(Video).where(Video.status == VideoStatus.queued.value,
                                                   col(Video.job_name).is_(None))
                               .order_by((Video.priority != "interactive"), Video.seq)
                               .limit(self.settings.dispatch_batch)).all()

        def key(v: Video) -> tuple:
            # A batch's videos of one model, queue and priority share Jobs of batch_pods_per_job pods;
            # single videos get their own.
            return (v.batch_id or v.id, v.model, v.queue, v.priority, v.tenant)

        # Units claimed in one transaction and then created side by side, dispatch_concurrency at a time.
        claims: list[tuple[str, list[Video]]] = []
        for _, group in groupby(sorted(waiting, key=lambda v: (key(v), v.seq)), key=key):
            # A pass making hundreds of Jobs outlasts the Lease unless it renews as it goes, and one
            # that cannot renew must stop before another replica takes over: ask before each unit.
            if not self.is_leader():
                # Units claimed earlier and not made yet are the leader's to make (see _follow); the
                # claims of this round were never committed, so those videos simply wait again.
                session.rollback()
                return False
            if seconds is not None and time.monotonic() - start > seconds:
                self._make(self._prepare_claimed(session, claims))
                return True  # a burst: let the loop follow what changed meanwhile, then go on
            videos = list(group)
            per_job = self.settings.items_per_pod * self.settings.batch_pods_per_job
            for unit in (videos[i:i + per_job] for i in range(0, len(videos), per_job)):
                name = job_name(unit[0].id, unit[0].attempt + 1)
                claimed = crud.claim_unit(session, videos=unit, job_name=name, now=time.time())
                if claimed:
                    claims.append((name, claimed))
                if len(claims) >= self.settings.dispatch_concurrency:
                    self._make(self._prepare_claimed(session, claims))
                    claims = []
        self._make(self._prepare_claimed(session, claims))
        return False

    def _prepare_claimed(self, session: Session, claims: list[tuple[str, list[Video]]]
                         ) -> list[Callable[[], None]]:
        """Commit the claims (the names are on the rows before any Job exists), then prepare the Jobs."""
        session.commit()
        return [self._prepare(session, name, videos) for name, videos in claims]

    def _make(self, ready: list[Callable[[], None]]) -> None:
        """Run prepared creations: one by one, or side by side when dispatch_concurrency > 1."""
        if len(ready) <= 1:
            for make in ready:
                make()
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.settings.dispatch_concurrency, thread_name_prefix="t2v-create")
        futures = [self._pool.submit(make) for make in ready]
        wait(futures)
        for future in futures:
            future.result()  # the first failure is raised once all have ended

    def _create(self, session: Session, name: str, videos: list[Video]) -> None:
        self._prepare(session, name, videos)()

    def _prepare(self, session: Session, name: str, videos: list[Video]) -> Callable[[], None]:
        """Everything that needs the session now; returns the storage and API calls (thread-safe)."""
        per_pod = self.settings.items_per_pod
        manifest = Manifest(job_name=name, items=[item_for(v, index_of(i, per_pod)) for i, v in enumerate(videos)])
        head = videos[0]
        unit = Unit(tenant=head.tenant, queue=head.queue, priority=head.priority, batch_id=head.batch_id)
        queue = local_queue(self.settings, unit.tenant, unit.queue)
        if queue not in self._queues_made and queue != self.settings.queue(unit.queue).local_queue:
            self.api.ensure_local_queue(queue, cluster_queue=cluster_queue(self.settings, unit.queue),
                                        tenant=unit.tenant)
            self._queues_made.add(queue)
        body = build_job(self.settings, manifest, unit)
        ids = [v.id for v in videos]
        firsts = [(v.queue, v.created_at) for v in videos if v.attempt == 1]  # submit -> first Job

        def make() -> None:
            write_manifest(self.store, manifest)
            created = self.api.create_job(body)
            if created:
                self.metrics.job_created(firsts, now=time.time())
            log.info("job created" if created else "job already existed",
                     extra={"job": name, "videos": ids, "indexes": manifest.completions})
        return make
