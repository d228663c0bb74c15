"""Prometheus metrics of the controller and the local runner: the questions an operator asks.

How many videos wait, where, and for whose turn; how long from submit to a Job, to Kueue's
admission, to a running pod; GPU seconds per unit of work by model and GPU; preemptions, checkpoint
resumes, failures by reason; how far the watcher trails the cluster. docs/operations.md lists them.

Counters and histograms are filled by the process that makes the change in the database (the Lease
holder in cluster mode, the runner in `t2v serve`), once per change. The waiting and running
gauges are read from the database at scrape time, so every replica serves the same numbers.
"""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

from core import costmodel, queues
from core.db import session_for
from core.models import Video
from core.status import VideoStatus

log = logging.getLogger("t2v.metrics")

# Submit -> Job / admission / running: seconds on an idle cluster, hours behind a CSV of thousands.
WAIT_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)
# Cluster event -> database: well under a second with the Job watch; the resync period (5 s) without it.
LAG_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 120, 300)
LAG_EVENTS = ("admitted", "suspended", "finished")  # controller/kube/jobs.py event_time
QUEUES = queues.NAMES  # Video.queue (webapp/submit.py routes by estimated GPU time)
PASS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class RunMetrics:
    """The metrics of both modes (the local runner's and the controller's), in a registry of their own
    (tests build many)."""

    def __init__(self, db_url: str | None = None) -> None:
        self.registry = r = CollectorRegistry()
        self.to_job = Histogram("t2v_submit_to_job_seconds", "Submit to its first Job (local: job process) created",
                                ["queue"], buckets=WAIT_BUCKETS, registry=r)
        self.to_admission = Histogram("t2v_submit_to_admission_seconds",
                                      "Submit to its first Kueue admission (local: a runner slot)",
                                      ["queue"], buckets=WAIT_BUCKETS, registry=r)
        self.to_running = Histogram("t2v_submit_to_running_seconds", "Submit to its first pod (local: process) running",
                                    ["queue"], buckets=WAIT_BUCKETS, registry=r)
        self.starts = Counter("t2v_video_starts", "Videos that went from queued to in_progress (re-admissions too)",
                              ["queue"], registry=r)
        self.finished = Counter("t2v_videos_finished", "Videos the controller finished, by final status",
                                ["queue", "model", "status"], registry=r)
        self.failures = Counter("t2v_video_failures", "Failed videos by error code", ["queue", "reason"], registry=r)
        self.requeues = Counter("t2v_video_requeues", "Attempts that ended without a result and were queued again",
                                ["queue"], registry=r)
        self.resumes = Counter("t2v_checkpoint_resumes", "Finished videos that resumed from a denoising checkpoint",
                               ["model"], registry=r)
        self.resumed_steps = Counter("t2v_checkpoint_resumed_steps",
                                     "Denoising steps not redone thanks to checkpoints", ["model"], registry=r)
        self.gpu_seconds = Counter("t2v_run_gpu_seconds", "GPU seconds of completed runs (text encode, denoise, decode)",
                                   ["model", "gpu"], registry=r)
        self.work_units = Counter("t2v_run_work_units",
                                  "Work units (transformer TFLOPs, core/costmodel.py) of those same runs",
                                  ["model", "gpu"], registry=r)
        for queue in QUEUES:  # series at 0 from the start, so rate() sees the first increment too
            for series in (self.to_job, self.to_admission, self.to_running, self.starts, self.requeues):
                series.labels(queue)
        if db_url:
            r.register(QueueCollector(db_url))

    # ---- what the dispatcher and watcher report ------------------------------------------------

    def job_created(self, firsts: list[tuple[str, float]], *, now: float) -> None:
        """A Job (or local process) was made; `firsts` are (queue, created_at) of its first-attempt videos."""
        for queue, created in firsts:
            self.to_job.labels(queue).observe(max(0.0, now - created))

    def started(self, video: Video, *, first: bool, admitted_at: float) -> None:
        """`video` went queued -> in_progress; `first` if it never ran before (started_at was empty)."""
        self.starts.labels(video.queue).inc()
        if first:
            self.to_admission.labels(video.queue).observe(max(0.0, admitted_at - video.created_at))

    def running(self, video: Video, *, since: float) -> None:
        """The first pod (process) of `video` runs since `since`."""
        self.to_running.labels(video.queue).observe(max(0.0, since - video.created_at))

    def preempted(self, video: Video, *, reason: str) -> None:
        """A scheduler stopped `video`'s unit (Kueue; never in embedded mode)."""

    def watched(self, event: str, *, at: float | None, now: float) -> None:
        """The DB now shows a cluster `event` dated `at` (cluster mode's lag; embedded mode has none)."""

    def settled(self, video: Video, outcome: str) -> None:
        """After results.settle: count the outcome, and the GPU time and resumes of a finished run."""
        if outcome == "requeued":
            self.requeues.labels(video.queue).inc()
            return
        if outcome not in (VideoStatus.completed.value, VideoStatus.failed.value):
            return  # discarded: cancelled or already terminal
        self.finished.labels(video.queue, video.model, outcome).inc()
        if outcome == VideoStatus.failed.value:
            self.failures.labels(video.queue, video.error_code or "unknown").inc()
        timings = video.timings or {}
        if timings.get("resumed_at_step"):
            self.resumes.labels(video.model).inc()
            self.resumed_steps.labels(video.model).inc(float(timings["resumed_at_step"]))
        spent = costmodel.gpu_seconds(timings) if outcome == VideoStatus.completed.value else None
        if spent:  # None for resumed runs: their denoise time covers part of the steps (costmodel.py)
            gpu = video.gpu or "unknown"
            self.gpu_seconds.labels(video.model, gpu).inc(spent)
            self.work_units.labels(video.model, gpu).inc(costmodel.work_units(
                num_frames=video.num_frames, width=video.width, height=video.height,
                steps=video.num_inference_steps, guidance=video.guidance_scale))



STAMP_GRAIN = 1.0  # the API server dates events to the whole second (metav1.Time drops the fraction)


def stamped(at: float, *, after: float, before: float) -> float:
    """When an event the API server dated `at` happened, best guess: it lies in the second the stamp
    names, no earlier than `after` (the video was submitted) and no later than `before` (we saw it).
    The middle of that span: taking the stamp as it is reads every wait 0.5 s short and every lag
    0.5 s long, and a sub-second admission as 0."""
    lo = max(at, after)
    hi = max(lo, min(at + STAMP_GRAIN, before))
    return (lo + hi) / 2


class ControllerMetrics(RunMetrics):
    """RunMetrics plus what only cluster mode has: Kueue preemptions, the watcher, the Lease, Job pods.
    Its event times come from the API server, in whole seconds: `stamped` reads them."""

    def __init__(self, db_url: str | None = None) -> None:
        super().__init__(db_url)
        r = self.registry
        self.preemptions = Counter("t2v_preemptions", "Running videos Kueue stopped (preempted or evicted), by reason",
                                   ["queue", "reason"], registry=r)
        self.lag = Histogram("t2v_watcher_lag_seconds", "Cluster event (Job admitted, suspended, finished) to its DB write",
                             ["event"], buckets=LAG_BUCKETS, registry=r)
        self.passes = Histogram("t2v_controller_pass_seconds", "Reconcile pass duration", ["kind"],
                                buckets=PASS_BUCKETS, registry=r)
        self.last_full_pass = Gauge("t2v_controller_last_full_pass_timestamp_seconds",
                                    "When the last full pass (every Job, pod and position) ended", registry=r)
        self.leader = Gauge("t2v_controller_leader", "1 while this controller holds the Lease and acts", registry=r)
        self.pods = Gauge("t2v_job_pods", "Not-finished Job pods by state (leader only)", ["state"], registry=r)
        for event in LAG_EVENTS:
            self.lag.labels(event)
        for kind in ("full", "changed"):
            self.passes.labels(kind)

    def preempted(self, video: Video, *, reason: str) -> None:
        self.preemptions.labels(video.queue, reason).inc()

    def started(self, video: Video, *, first: bool, admitted_at: float) -> None:
        at = stamped(admitted_at, after=video.created_at, before=time.time())
        super().started(video, first=first, admitted_at=at)

    def running(self, video: Video, *, since: float) -> None:
        super().running(video, since=stamped(since, after=video.created_at, before=time.time()))

    def watched(self, event: str, *, at: float | None, now: float) -> None:
        """The DB now shows a cluster `event` that the API server dated `at` (None: not dated, not counted)."""
        if at is not None:
            self.lag.labels(event).observe(max(0.0, now - stamped(at, after=at, before=now)))

    def job_pods(self, counts: dict[str, int] | None) -> None:
        """This pass's Job pods by state, every state named (0s included: controller/kube/pods.py PodState);
        None (not the leader: it does not look) removes the series."""
        if counts is None:
            self.pods.clear()
            return
        for state, n in counts.items():
            self.pods.labels(state).set(n)

    def pass_done(self, kind: str, seconds: float, *, now: float) -> None:
        self.passes.labels(kind).observe(seconds)
        if kind == "full":
            self.last_full_pass.set(now)


class QueueCollector:
    """`t2v_videos_waiting{queue,tenant,stage}` and `t2v_videos_running{queue,tenant}`, read at scrape time.

    stage `dispatch`: no Job yet (the controller's turn); `admission`: its Job waits for Kueue (or
    was preempted and waits again). One grouped query over the `status` index per scrape.
    """

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url

    def describe(self):  # noqa: ANN201 - no query at registration
        return []

    def collect(self):  # noqa: ANN201
        waiting = GaugeMetricFamily("t2v_videos_waiting", "Queued videos by queue, tenant and whose turn it is",
                                    labels=["queue", "tenant", "stage"])
        running = GaugeMetricFamily("t2v_videos_running", "In-progress videos by queue and tenant",
                                    labels=["queue", "tenant"])
        try:
            with session_for(self.db_url, write=False) as s:
                rows = s.execute(sa.select(Video.status, Video.queue, Video.tenant,
                                           sa.func.count(Video.job_name), sa.func.count())
                                 .where(sa.or_(Video.status == VideoStatus.queued.value,
                                               Video.status == VideoStatus.in_progress.value))
                                 .group_by(Video.status, Video.queue, Video.tenant)).all()
        except sa.exc.SQLAlchemyError as e:  # the scrape still answers; the gauges are missing, not wrong
            log.warning("queue metrics unavailable", extra={"error": str(e)[:200]})
            rows = []
        for status, queue, tenant, with_job, n in rows:
            if status == VideoStatus.queued.value:
                waiting.add_metric([queue, tenant, "dispatch"], n - with_job)
                waiting.add_metric([queue, tenant, "admission"], with_job)
            else:
                running.add_metric([queue, tenant], n)
        yield waiting
        yield running
