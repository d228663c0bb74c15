"""The Backend of cluster mode: a unit is an indexed `batch/v1` Job under Kueue.

A thin adapter (STYLE 3): it builds Jobs (controller/kube/jobs.py), reads their state and their pods
(controller/kube/pods.py) into the generic loop's terms, and reads Kueue's words on why a Job waits.
What it lists once per pass (Jobs, pods, Workloads) it keeps until the next `load`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from itertools import groupby

from controller.backend import Made, View
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
from controller.kube.pods import PodView
from controller.settings import ControllerSettings
from controller.table import Phase, Seen
from core.items import item_for
from core.models import Video
from core.status import VideoStatus
from jobcontract.errors import ContractError
from jobcontract.records import Manifest, manifest_key, read_manifest, write_manifest
from jobcontract.storage import ObjectStore

log = logging.getLogger("t2v.controller")


def kueue_places(queued: list[Video], workload_of: dict[str, str | None], pending: dict[str, int]
                 ) -> dict[str, int | None]:
    """Each queued video's place from Kueue's pending list (Workload -> place in its ClusterQueue),
    mended for the Workload Kueue is trying to admit.

    Kueue takes each ClusterQueue's head out of its queue while a scheduling cycle tries to admit
    it, and the visibility API then lists the others counted from the next one. Under StrictFIFO a
    head that does not fit is tried again every cycle, so the list often lacks it: two waiting
    videos both read 1, the head's from our own order. Where exactly one known Workload of a
    ClusterQueue's waiting videos is absent while others are listed, it is that head: 1, and the
    others one further back. (A Workload admitted since the list also leaves it; its video is in
    progress by the next pass, so the places are off by one for a pass at most.)
    """
    out = {v.id: pending.get(workload_of.get(v.id) or "") for v in queued}
    for queue in {v.queue for v in queued}:
        mine = [v for v in queued if v.queue == queue and workload_of.get(v.id)]
        known = {workload_of[v.id] for v in mine}
        absent = known - pending.keys()
        if len(absent) != 1 or absent == known:
            continue
        head = absent.pop()
        for v in mine:
            out[v.id] = 1 if workload_of[v.id] == head else out[v.id] + 1
    return out


class KubeBackend:
    """Indexed Jobs in one namespace; Kueue decides when they run."""

    noun = "Job"
    stop_on_any_cancel = False  # a batch Job's other videos go on; a cancelled one is discarded at its end

    def __init__(self, settings: ControllerSettings, store: ObjectStore, api: JobApi) -> None:
        self.settings = settings
        self.store = store
        self.api = api
        self.concurrency = settings.dispatch_concurrency
        self.jobs: dict[str, dict | None] = {}  # this pass's Jobs by name (None: deleted)
        self.pods: dict[tuple[str, int], PodView] = {}  # (Job, completion index) -> its live pod
        self._workloads: dict[str, dict] | None = None  # this pass's, listed when first needed
        self._workload_names: dict[str, str] = {}  # Job -> its Workload's name (fixed for the Job's life)
        self._indexes: dict[str, dict[str, int]] = {}  # Job -> video id -> completion index (manifest)
        self._queues_made: set[str] = set()  # tenant LocalQueues known to exist

    def load(self, changed: dict[str, dict | None] | None) -> bool:
        """Read the cluster for a pass: every Job (`changed` None), or just the changed ones the watch
        saw; returns whether there is anything to follow."""
        jobs = self.api.list_jobs() if changed is None else changed
        if changed is None:
            # Tenant LocalQueues are ensured again once per full pass: one an admin deleted (or a
            # namespace re-created) comes back within a resync, not at the next restart.
            self._queues_made.clear()
        if jobs:
            self.pods = self.api.job_pods(model_label=self.settings.model_ready_node_label)
        elif changed is None:
            self.pods = {}
        self.jobs = dict(jobs)
        self._workloads = None
        return bool(jobs) or changed is None

    # ---- dispatch -----------------------------------------------------------------------------

    def capacity(self) -> None:
        return None  # Kueue admits

    def waiting_limit(self) -> int:
        return self.settings.dispatch_batch

    def units(self, waiting: list[Video], free: int | None) -> list[list[Video]]:
        def key(v: Video) -> tuple:
            # A batch's videos of one model, queue and priority share Jobs of batch_pods_per_job pods;
            # single videos get their own.
            return (v.batch_id or v.id, v.model, v.queue, v.priority, v.tenant)

        per_job = self.settings.items_per_pod * self.settings.batch_pods_per_job
        out: list[list[Video]] = []
        for _, group in groupby(sorted(waiting, key=lambda v: (key(v), v.seq)), key=key):
            videos = list(group)
            out += [videos[i:i + per_job] for i in range(0, len(videos), per_job)]
        return out

    def unit_name(self, videos: list[Video]) -> str:
        return job_name(videos[0].id, videos[0].attempt + 1)

    def prepare(self, name: str, videos: list[Video]) -> Callable[[], Made]:
        """Everything that needs the rows now; returns the storage and API calls (thread-safe)."""
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

        def make() -> Made:
            write_manifest(self.store, manifest)
            return Made(created=self.api.create_job(body))
        return make

    # ---- following ----------------------------------------------------------------------------

    def observe(self, name: str, videos: list[Video]) -> View:
        job = self.jobs.get(name)
        if job is None:
            return _all(videos, Seen(Phase.missing, f"its Job {name} disappeared"))
        state = read_state(job)
        view = View(admitted_at=event_time(job, "admitted"))
        active = [v for v in videos if VideoStatus(v.status).is_active()]
        if not state.finished and (ended := finished_indexes(job)):
            # Indexes end one by one: settle their videos now, not when the last index ends.
            view.seen = self._ended_parts(name, job, active, ended)
        rest = [v for v in videos if v.id not in view.seen]
        if state.finished:
            why = self._pod_endings(name) if state.failed else {}
            indexes = (self._item_indexes(name) or {}) if why else {}
            view.seen |= {v.id: Seen(Phase.ended, why.get(indexes.get(v.id, -1), state.reason)) for v in rest}
            view.finished, view.ended_at = True, event_time(job, "finished")
        elif state.running:
            view.seen |= self._running_parts(name, rest)
        elif state.suspended:
            stopped = Seen(Phase.waiting, state.reason)
            if any(v.status == VideoStatus.in_progress for v in rest):
                # Kueue suspended an admitted Job: preempted or evicted; the same Job resumes.
                workload = self._workload(name)
                why = workload_why(workload) or f"preempted or evicted ({state.reason})"
                cause, view.stopped_at = workload_stop(workload)
                stopped = Seen(Phase.waiting, f"{why}; queued again", cause=cause)
            view.seen |= {v.id: stopped for v in rest}
        else:  # admitted, no pod counted yet
            view.seen |= {v.id: Seen(Phase.pending, state.reason) for v in rest}
        return view

    def _ended_parts(self, name: str, job: dict, active: list[Video], ended: set[int]) -> dict[str, Seen]:
        indexes = self._item_indexes(name)
        if indexes is None:
            return {}
        out: dict[str, Seen] = {}
        for v in active:
            index = indexes.get(v.id)
            if index not in ended:
                continue
            why = f"index {index} of Job {name} ended"
            if index in failed_indexes(job):
                why = self._pod_endings(name).get(index, why)
            out[v.id] = Seen(Phase.ended, why)
            log.info("job index ended", extra={"job": name, "index": index, "video_id": v.id})
        return out

    def _running_parts(self, name: str, videos: list[Video]) -> dict[str, Seen]:
        indexes = self._item_indexes(name) or {}
        # A pod that cannot start (image not pullable, broken spec) past the grace period: its Job is
        # deleted and its videos fail with the kubelet's words, instead of holding GPUs in Kueue for ever.
        now = time.time()
        stuck = [p for (job, _), p in self.pods.items() if job == name and p.trouble
                 and now - _epoch(p.created) >= self.settings.pod_start_grace_seconds]
        if stuck:
            log.warning("job pod cannot start; deleting its job", extra={"job": name, "why": stuck[0].trouble})
            return {v.id: Seen(Phase.stuck, stuck[0].trouble, retry=False) for v in videos}
        out: dict[str, Seen] = {}
        for v in videos:
            pod = self.pods.get((name, indexes.get(v.id, -1)))
            out[v.id] = Seen(Phase.running, f"admitted by Kueue; running in Job {name}",
                             node=pod.node if pod else None, running_since=pod.running_since if pod else None)
        return out

    def cancel(self, name: str, reason: str) -> None:
        self.api.delete_job(name)

    def positions(self, queued: list[Video]) -> dict[str, int | None]:
        # Kueue's own answer first (visibility API: place in the ClusterQueue of the Job's Workload);
        # where it is not served, Kueue's order (priority, then creation time) over the waiting Jobs.
        queues = sorted({local_queue(self.settings, v.tenant, v.queue) for v in queued})
        kueue = self.api.pending_positions(queues) if queued else {}
        if kueue:
            missing = next((v.job_name for v in queued if v.job_name not in self._workload_names), None)
            if missing is not None:
                self._workload(missing)  # new Jobs since the last list: list the Workloads once
            return kueue_places(queued, {v.id: self._workload_names.get(v.job_name) for v in queued}, kueue)
        ordered = sorted(queued, key=lambda v: (v.priority != "interactive", v.seq))
        return {v.id: pos for pos, v in enumerate(ordered, start=1)}

    def keep_only(self, names: set[str]) -> None:
        self._indexes = {k: v for k, v in self._indexes.items() if k in names}
        self._workload_names = {k: v for k, v in self._workload_names.items() if k in names}

    # ---- reads, once per Job or pass ----------------------------------------------------------

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


def _all(videos: list[Video], seen: Seen) -> View:
    return View(seen={v.id: seen for v in videos})


def _epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339).timestamp() if rfc3339 else time.time()
