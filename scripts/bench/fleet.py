#!/usr/bin/env python3
"""A day on 8 GPUs, compressed: interactive short videos arriving (Poisson) while long CSV batches
wait, under kueue/ as shipped and under one plain FIFO queue, on the same test control plane.

    .venv/bin/python scripts/bench/fleet.py                   # mixed: kueue and fifo, ~10 minutes each
    .venv/bin/python scripts/bench/fleet.py --scenarios short-only,long-only,stream --setups kueue
    .venv/bin/python scripts/bench/fleet.py --setups kueue,fifo,kueue-batch-job   # and the old shape
    .venv/bin/python scripts/bench/fleet.py --setups kueue --window 120 --batches 2   # a short look

Scenarios (`--scenarios`, SCENARIOS below): `mixed` (CSV batches and short videos at 20 % of the
GPUs: a day), `short-only` (short videos alone, offered at the node's whole capacity), `long-only`
(the batches alone), `stream` (short videos at 80 % of the node with 16-row batches arriving into
them: how soon long work gets its nominal share back, `long_below_share`).

Brings up scripts/testcluster's loopback control plane (one kwok node with 8 nvidia.com/gpu,
Kueue v0.19.2) and runs t2v in cluster mode on it (scripts/bench/kubestack.py: PostgreSQL,
`t2v serve`, the controller as its own process, the kwok pod stand-in), once per scenario and setup,
each setup in its own namespace with a fresh database:

- `kueue`: kueue/ as shipped (short and long ClusterQueues in a cohort, 4 + 4 GPUs, each lending
  all of its GPUs while it has nothing waiting, reclaim, interactive above batch priority), the
  controller with its shipped settings;
- `fifo`: one ClusterQueue of 8 GPUs, StrictFIFO, one LocalQueue for everything, one priority
  (the controller's queue and priority-class settings pointed at them);
- `kueue-batch-job` (not run by default): kueue/ as shipped with the Job shape of earlier versions,
  one indexed Job of up to 4 pods per CSV batch (`T2V_BATCH_PODS_PER_JOB=8`), for before/after
  (that shape ran under BestEffortFIFO: add `--queueing BestEffortFIFO`, which applies to kueue/'s
  two ClusterQueues in every setup of the run).

Both get the same arrivals (seeded). Run times come from the cost model (core.params.
estimated_gpu_seconds, ~163 GPU-s for a default Mochi video) divided by `--speedup`; a pod holds
2 GPUs and the stand-in spends an item's GPU-seconds / 2 on it (one item per GPU in a batch pod,
guidance split over both for a single video). Per setup it reports the GPU-busy fraction while
work waits, useful GPU-seconds / (8 x makespan), makespan against its lower bound, and the p50/p95
queue wait of the short videos (submit -> pod running), against one long item's run time; the JSON
adds where the idle time between pods goes (`turnover_gaps`, `eviction_gaps`) and Kueue's CPU.

Prints a table and writes JSON; `--write-docs` rewrites its section of docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from scripts.bench.docsection import write_section  # noqa: E402
from scripts.bench.kubestack import KUEUE_QUEUES, QUEUEING_STRATEGIES, T2VStack, control_plane, log, pct  # noqa: E402
from core import queues  # noqa: E402
from core.costmodel import DEFAULT_SECONDS_PER_UNIT, work_units  # noqa: E402

GPUS = 8
GPUS_PER_POD = 2  # ControllerSettings.gpus_per_pod
LONG = {"model": "mochi-1-preview"}  # defaults: 85 frames, 848x480, 64 steps: ~163 GPU-s, the long queue
SHORTS = [{"model": "mochi-1-preview", "seconds": "1"},  # 31 frames: ~65 GPU-s
          {"model": "mochi-1-preview", "seconds": "1.6"}]  # 49 frames: ~98 GPU-s (both under 120: short)
# What each scenario sends; --batches, --batches-at-start, --rows and --short-share override these for every
# scenario of a run. short-only offers short videos at the node's whole capacity; stream at 80 % of it,
# more than short's nominal half and more than the node turns over at 20x, so the stream fills the node
# while its backlog stays a few hundred videos.
SCENARIOS = {
    "mixed": {"batches": 5, "batches_at_start": 3, "rows": 64, "short_share": 0.2},
    "short-only": {"batches": 0, "batches_at_start": 0, "rows": 0, "short_share": 1.0},
    "long-only": {"batches": 5, "batches_at_start": 3, "rows": 64, "short_share": 0.0},
    "stream": {"batches": 6, "batches_at_start": 0, "rows": 16, "short_share": 0.8},
}
FIFO_NS = "t2v-fifo"
BATCH_JOB_NS = "t2v-batch-job"
SETUPS = ("kueue", "fifo", "kueue-batch-job")
FIFO_ENV = {"T2V_NAMESPACE": FIFO_NS, "T2V_SHORT_QUEUE": "fifo", "T2V_LONG_QUEUE": "fifo",
            "T2V_SHORT_CLUSTER_QUEUE": "t2v-fifo", "T2V_LONG_CLUSTER_QUEUE": "t2v-fifo",
            "T2V_SHORT_QUEUE_MAX_GPUS": "8", "T2V_TENANT_QUEUES": "false",
            "T2V_INTERACTIVE_PRIORITY_CLASS": "t2v-fifo", "T2V_BATCH_PRIORITY_CLASS": "t2v-fifo"}


def fifo_docs() -> list[dict]:
    """One ClusterQueue (8 GPUs, StrictFIFO, no cohort, no preemption), its LocalQueue, one priority."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": FIFO_NS}},
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "WorkloadPriorityClass", "metadata": {"name": "t2v-fifo"},
         "value": 0, "description": "the one priority of the FIFO comparison"},
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue", "metadata": {"name": "t2v-fifo"},
         "spec": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": FIFO_NS}},
                  "queueingStrategy": "StrictFIFO",
                  "resourceGroups": [{"coveredResources": ["nvidia.com/gpu", "cpu", "memory"], "flavors": [
                      {"name": "h100", "resources": [{"name": "nvidia.com/gpu", "nominalQuota": GPUS},
                                                     {"name": "cpu", "nominalQuota": 192},
                                                     {"name": "memory", "nominalQuota": "1800Gi"}]}]}]}},
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
         "metadata": {"name": "fifo", "namespace": FIFO_NS}, "spec": {"clusterQueue": "t2v-fifo"}},
    ]


def batch_job_docs() -> list[dict]:
    """A namespace for the kueue-batch-job setup with kueue/'s LocalQueues (the same ClusterQueues)."""
    docs: list[dict] = [{"apiVersion": "v1", "kind": "Namespace",
                         "metadata": {"name": BATCH_JOB_NS, "labels": {"t2v.io/kueue": "enabled"}}}]
    for lq in ("short", "long"):
        docs.append({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
                     "metadata": {"name": lq, "namespace": BATCH_JOB_NS}, "spec": {"clusterQueue": f"t2v-{lq}"}})
    return docs


def gpu_seconds(*, num_frames: int, width: int, height: int, steps: int, guidance: float) -> float:
    """GPU-seconds of one video by the API's uncalibrated cost model (core/costmodel.py)."""
    return work_units(num_frames=num_frames, width=width, height=height, steps=steps,
                      guidance=guidance) * DEFAULT_SECONDS_PER_UNIT


def item_gpu_seconds(item) -> float:
    return gpu_seconds(num_frames=item.num_frames, width=item.width, height=item.height,
                       steps=item.num_inference_steps, guidance=item.guidance_scale)


FRAMES = {"1": 31, "1.6": 49}
LONG_GPU_S = gpu_seconds(num_frames=85, width=848, height=480, steps=64, guidance=4.5)
SHORT_GPU_S = {k: gpu_seconds(num_frames=f, width=848, height=480, steps=64, guidance=4.5) for k, f in FRAMES.items()}


@dataclass(frozen=True)
class Arrival:
    at: float  # wall seconds after the start
    kind: str  # short | batch
    body: dict | None = None  # a short video's request
    rows: int = 0  # a batch's rows


def scenario_args(args: argparse.Namespace, scenario: str) -> argparse.Namespace:
    """`args` with the scenario's arrivals filled in where the command line left them unset."""
    out = argparse.Namespace(**vars(args))
    for k, v in SCENARIOS[scenario].items():
        if getattr(out, k, None) is None:
            setattr(out, k, v)
    out.scenario = scenario
    return out


def arrivals(args: argparse.Namespace) -> list[Arrival]:
    """The same schedule for every setup: batches at the start and through the first 2/3, shorts Poisson."""
    rng = random.Random(args.seed)
    out = [Arrival(0.0, "batch", rows=args.rows) for _ in range(args.batches_at_start)]
    later = args.batches - args.batches_at_start
    out += [Arrival(round(args.window * 2 / 3 * (i + 1) / (later + 1), 1), "batch", rows=args.rows)
            for i in range(later)]
    mean_short = sum(SHORT_GPU_S.values()) / len(SHORT_GPU_S) / args.speedup
    rate = args.short_share * GPUS / mean_short  # per wall second
    t = rng.expovariate(rate) if rate > 0 else args.window
    n = 0
    while t < args.window:
        secs = rng.choice(list(FRAMES))
        out.append(Arrival(round(t, 2), "short", body={"model": "mochi-1-preview", "seconds": secs,
                                                       "prompt": f"an interactive clip {n}"}))
        n += 1
        t += rng.expovariate(rate)
    return sorted(out, key=lambda a: a.at)


def run_setup(plane, name: str, args: argparse.Namespace, schedule: list[Arrival]) -> dict:
    namespace = {"kueue": "t2v", "fifo": FIFO_NS, "kueue-batch-job": BATCH_JOB_NS}[name]
    env = {"fifo": dict(FIFO_ENV), "kueue-batch-job": {"T2V_NAMESPACE": BATCH_JOB_NS, "T2V_BATCH_PODS_PER_JOB": "8"}
           }.get(name, {})
    env.update(kv.split("=", 1) for kv in args.set)
    speedup = args.speedup

    def run_seconds(item) -> float:
        return item_gpu_seconds(item) / speedup / GPUS_PER_POD

    root = Path(tempfile.mkdtemp(prefix=f"t2v-bench-fleet-{name}-"))
    # Results report the uncompressed GPU time: the API's cost model calibrates its short/long
    # routing from finished runs, and must keep seeing real-scale ones.
    stack = T2VStack(plane, namespace, root, controller_env=env, run_seconds=run_seconds, db=args.db,
                     stand_in={"reported_seconds": lambda item, measured: item_gpu_seconds(item),
                               "resume": not args.no_resume})
    submitted: list[tuple[float, str, str]] = []  # (time, kind, id)
    errors: list[str] = []
    try:
        stack.start()
        time.sleep(2)
        load = os.getloadavg()
        kueue_cpu0 = plane.cpu_seconds("kueue")
        t0 = time.time()

        def feeder() -> None:
            for i, a in enumerate(schedule):
                delay = t0 + a.at - time.time()
                if delay > 0:
                    time.sleep(delay)
                try:
                    if a.kind == "batch":
                        rows = [{**LONG, "prompt": f"batch {i} row {r}"} for r in range(a.rows)]
                        submitted.append((time.time(), "batch", stack.submit_csv(rows, f"batch-{i}")))
                    else:
                        submitted.append((time.time(), "short", stack.submit(a.body)))
                except Exception as e:  # noqa: BLE001 - reported, the run goes on
                    errors.append(f"{a}: {e}")

        feed = threading.Thread(target=feeder, daemon=True)
        feed.start()
        total = sum(a.rows if a.kind == "batch" else 1 for a in schedule)
        feed.join(timeout=args.window + 120)
        ok = stack.wait_terminal(total, timeout=args.timeout)
        time.sleep(1)
        if not ok:
            log(f"{name}: timed out: {dict(stack.counts())}")
        load_after = os.getloadavg()
        kueue_cpu = plane.cpu_seconds("kueue") - kueue_cpu0
        stack.stop_controller()
        result = analyse(stack, t0, speedup)
        result.update({"setup": name, "load": load, "load_after": load_after, "kueue_cpu_seconds": round(kueue_cpu, 1),
                       "submit_errors": errors,
                       "stand_in_errors": list(stack.pods.errors), "timed_out": not ok})
        return result
    finally:
        stack.stop()
        plane.delete_namespace_jobs(namespace, wait=True)  # the next scenario uses the namespace again


def _merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for a, b in sorted(intervals):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _busy_within(pods: list[tuple[float, float, int]], windows: list[tuple[float, float]]) -> float:
    """GPU-seconds of pods running inside `windows` (merged), GPUs in use capped at the node's 8."""
    edges = sorted([(a, g) for a, _, g in pods] + [(b, -g) for _, b, g in pods])
    segments, used, last = [], 0, None
    for t, dg in edges:
        if last is not None and t > last and used > 0:
            segments.append((last, t, min(used, GPUS)))
        used, last = used + dg, t
    total = 0.0
    for a, b, u in segments:
        for wa, wb in windows:
            lo, hi = max(a, wa), min(b, wb)
            if hi > lo:
                total += u * (hi - lo)
    return total


def analyse(stack: T2VStack, t0: float, speedup: float) -> dict:
    videos = stack.videos()
    obs = stack.observer
    with obs.lock:
        jobs = dict(obs.jobs)
        pods = list(obs.pods.values())
    end = max((v["completed_at"] or 0) for v in videos.values())
    makespan = end - t0

    def work(v: dict) -> float:  # GPU-seconds the stand-in spends on the video (all its GPUs)
        return gpu_seconds(num_frames=v["num_frames"], width=v["width"], height=v["height"],
                           steps=v["num_inference_steps"], guidance=v["guidance_scale"]) / speedup

    useful = sum(work(v) for v in videos.values() if v["status"] == "completed")
    # Lower bound: from any arrival time on, what arrives then or later needs all 8 GPUs at least
    # that long; and no video ends before its arrival plus its own time on a 2-GPU pod.
    arrivals = sorted((v["created_at"] - t0, work(v)) for v in videos.values())
    bound, after = 0.0, sum(w for _, w in arrivals)
    for at, w in arrivals:
        bound = max(bound, at + after / GPUS, at + w / GPUS_PER_POD)
        after -= w
    runs = stack.pods.finished()
    running = [(p.running, p.ended, p.gpus) for p in pods if p.running and p.ended]
    killed = [(p.running, p.ended, p.gpus) for p in pods if p.running and p.ended and p.phase != "Succeeded"]
    busy_all = _busy_within(running, [(t0, end)])
    # Work waits: a Job of ours not finished and suspended (waiting for Kueue, or evicted), or a
    # video submitted whose Job does not exist yet.
    waits = []
    video_job = {vid: name for name, j in jobs.items() for vid in j.videos}
    for j in jobs.values():
        marks = j.suspends + [(j.finished or end, False)]
        for (a, susp), (b, _) in zip(marks, marks[1:]):
            if susp:
                waits.append((a, b))
    for vid, v in videos.items():
        j = jobs.get(video_job.get(vid, ""))
        waits.append((v["created_at"], j.created if j else end))
    waits = _merge([(max(a, t0), min(b, end)) for a, b in waits])
    waiting_s = sum(b - a for a, b in waits)
    busy_waiting = _busy_within(running, waits)
    first_running: dict[str, float] = {}
    for p in pods:
        if p.running:
            first_running[p.job] = min(first_running.get(p.job, p.running), p.running)
    short_waits = [first_running[video_job[vid]] - v["created_at"] for vid, v in videos.items()
                   if v["batch_id"] is None and video_job.get(vid) in first_running]
    # Where a short video's wait went: submit -> its Job made (the controller), -> first unsuspended
    # (Kueue's admission, preemption included), -> its pod Running (Job controller, scheduler, kwok).
    parts: dict[str, list[float]] = {"to_job": [], "to_admitted": [], "to_running": []}
    for vid, v in videos.items():
        name = video_job.get(vid, "")
        j = jobs.get(name)
        if v["batch_id"] is not None or j is None or name not in first_running:
            continue
        admitted = next((t for t, suspended in j.suspends if not suspended), None)
        if admitted is None:
            continue
        parts["to_job"].append(j.created - v["created_at"])
        parts["to_admitted"].append(admitted - j.created)
        parts["to_running"].append(first_running[name] - admitted)
    long_item = LONG_GPU_S / speedup
    return {
        "videos": len(videos), "completed": sum(v["status"] == "completed" for v in videos.values()),
        "shorts": sum(v["batch_id"] is None for v in videos.values()),
        "makespan": round(makespan, 1), "makespan_lower_bound": round(bound, 1),
        "makespan_over_bound": round(makespan / bound, 3) if bound else None,
        "useful_gpu_seconds": round(useful, 1),
        "useful_fraction": round(useful / (GPUS * makespan), 3),
        "busy_fraction": round(busy_all / (GPUS * makespan), 3),
        "waiting_seconds": round(waiting_s, 1),
        "busy_fraction_while_waiting": round(busy_waiting / (GPUS * waiting_s), 3) if waiting_s else None,
        "preempted_pods": len(killed),
        "wasted_gpu_seconds": round(sum((b - a) * g for a, b, g in killed), 1),  # the killed pods' whole time
        # What the stops threw away: denoising not checkpointed (all of it, with --no-resume).
        "lost_gpu_seconds": round(sum(r.lost_seconds for r in runs) * GPUS_PER_POD, 1),
        "checkpoints_saved": sum(len(r.saved) for r in runs),
        "items_resumed": sum(len(r.resumed) for r in runs),
        # Suspended again after running: Kueue evicted (preempted) the whole Job.
        "evictions": sum(sum(1 for (_, a), (_, b) in zip(j.suspends, j.suspends[1:]) if not a and b)
                         for j in jobs.values()),
        "evicted_jobs": sum(1 for j in jobs.values()
                            if any(not a and b for (_, a), (_, b) in zip(j.suspends, j.suspends[1:]))),
        "short_wait": _summary(short_waits),
        "short_wait_parts": {k: _summary(x) for k, x in parts.items()},
        "long_item_seconds": round(long_item, 2),
        "eviction_gaps": eviction_gaps(jobs, pods),
        "turnover_gaps": turnover_gaps(jobs, pods),
        "long_below_share": long_below_share(jobs, pods, videos, t0, end),
        "short_pod_seconds_max": round(max(SHORT_GPU_S.values()) / speedup / GPUS_PER_POD, 2),
    }


def long_below_share(jobs: dict, pods: list, videos: dict, t0: float, end: float) -> dict:
    """How long long work waited while holding less than its nominal GPUs (kueue/'s t2v-long): each
    maximal interval in which some long-queue work waits (its Job suspended and not finished, or a
    video without its Job yet) while long-queue pods hold fewer than the nominal GPUs. `reclaim` are
    those during which short work held more than its own nominal share (borrowing long's) at some
    moment: the wait for short's borrowers to give the GPUs back. The rest are pod turnovers."""
    nominal = {q.name: q.nominal_gpus for q in queues.QUEUES}
    queue_of = {name: j.queue for name, j in jobs.items()}
    video_job = {vid: name for name, j in jobs.items() for vid in j.videos}
    edges: list[tuple[float, str, int]] = []  # (time, what, +/-): what is short|long (GPUs) or wait
    for p in pods:
        q = queue_of.get(p.job)
        if p.running is not None and q in nominal:
            edges += [(p.running, q, p.gpus), (p.ended or end, q, -p.gpus)]
    waits = []
    for name, j in jobs.items():
        if j.queue != "long":
            continue
        marks = j.suspends + [(j.finished or end, False)]
        waits += [(a, b) for (a, susp), (b, _) in zip(marks, marks[1:]) if susp]
    for vid, v in videos.items():
        if v["queue"] == "long":
            j = jobs.get(video_job.get(vid, ""))
            waits.append((v["created_at"], j.created if j else end))
    for a, b in _merge([(max(a, t0), min(b, end)) for a, b in waits]):
        edges += [(a, "wait", 1), (b, "wait", -1)]
    held, waiting = {"short": 0, "long": 0}, 0
    episodes: list[tuple[float, float, bool]] = []  # (start, end, short borrowed meanwhile)
    start: float | None = None
    borrowed = False
    for t, what, d in sorted(edges, key=lambda e: (e[0], e[2])):  # ends before starts at one instant
        if what == "wait":
            waiting += d
        else:
            held[what] += d
        below = waiting > 0 and held["long"] < nominal["long"]
        if below and start is None:
            start, borrowed = t, False
        if start is not None:
            borrowed = borrowed or held["short"] > nominal["short"]
        if not below and start is not None:
            episodes.append((start, t, borrowed))
            start = None
    lengths = [b - a for a, b, _ in episodes]
    return {"all": _summary(lengths), "reclaim": _summary([b - a for a, b, r in episodes if r]),
            "nominal_gpus": nominal["long"]}


def _summary(x: list[float]) -> dict:
    return {"p50": pct(x, 50), "p95": pct(x, 95), "max": max(x) if x else None, "n": len(x)}


def eviction_gaps(jobs: dict, pods: list) -> dict:
    """How long a preempted pod's GPUs stand idle: Kueue suspends the victim's Job -> its pod has ended
    (Job controller, the stand-in as kubelet) -> the next pod on the node is Running (Kueue frees the
    quota and admits the preemptor, the Job controller makes its pod, the scheduler, kwok)."""
    to_ended, to_next = [], []
    starts = sorted(p.running for p in pods if p.running)
    for p in pods:
        if not (p.running and p.ended) or p.phase == "Succeeded":
            continue
        j = jobs.get(p.job)
        suspended = max((t for t, susp in (j.suspends if j else []) if susp and t <= p.ended), default=None)
        if suspended is not None and suspended >= p.running:
            to_ended.append(p.ended - suspended)
        later = next((t for t in starts if t >= p.ended), None)
        if later is not None:
            to_next.append(later - p.ended)
    return {"suspended_to_pod_ended": _summary(to_ended), "pod_ended_to_next_running": _summary(to_next)}


def turnover_gaps(jobs: dict, pods: list) -> dict:
    """Where the GPUs' idle time between one pod and the next goes, hop by hop, for every pod that ended
    (finished or stopped) and the first pod Running after it whose Job Kueue unsuspended after that end
    (so it waited for the freed GPUs): the pod ended -> its Job marked finished (Job controller; pods
    that finished only) and -> the next Job unsuspended (Kueue released the quota and admitted it) ->
    its pod created (Job controller) -> bound (scheduler) -> Running (kwok, the stand-in)."""
    hops: dict[str, list[float]] = {k: [] for k in (
        "pod_ended_to_job_finished", "pod_ended_to_next_unsuspended", "unsuspended_to_pod_created",
        "pod_created_to_bound", "bound_to_running", "pod_ended_to_next_running")}
    starts = sorted((p for p in pods if p.running), key=lambda p: p.running)
    taken: set[int] = set()  # each next pod follows one ended pod: the first to end before it
    for p in sorted((p for p in pods if p.running and p.ended), key=lambda p: p.ended):
        j = jobs.get(p.job)
        if p.phase == "Succeeded" and j and j.finished and j.finished >= p.ended:
            hops["pod_ended_to_job_finished"].append(j.finished - p.ended)
        for q in starts:
            if q.running < p.ended or q is p or id(q) in taken:
                continue
            nj = jobs.get(q.job)
            admitted = max((t for t, susp in (nj.suspends if nj else []) if not susp and t <= q.created),
                           default=None)
            if admitted is None or admitted < p.ended or not q.bound:
                continue
            hops["pod_ended_to_next_unsuspended"].append(admitted - p.ended)
            hops["unsuspended_to_pod_created"].append(q.created - admitted)
            hops["pod_created_to_bound"].append(q.bound - q.created)
            hops["bound_to_running"].append(q.running - q.bound)
            hops["pod_ended_to_next_running"].append(q.running - p.ended)
            taken.add(id(q))
            break
    return {k: _summary(x) for k, x in hops.items()}


def fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f} s"


def _evictions(r: dict) -> str:
    return f"{r['evictions']} ({r['evicted_jobs']})" if "evictions" in r else "—"  # not counted before


def describe(scenario: str, sc: dict, cfg: dict) -> str:
    """One line on what a scenario sends."""
    parts = []
    if sc["batches"]:
        later = sc["batches"] - sc["batches_at_start"]
        parts.append(f"{sc['batches']} CSV batches of {sc['rows']} default Mochi videos ({sc['batches_at_start']} "
                     f"queued at the start{f', {later} through the first two thirds' if later else ''})")
    if sc["short_share"]:
        parts.append(f"short videos arriving Poisson at {sc['short_share']:.0%} of the 8 GPUs for "
                     f"{cfg['window']:g} s")
    return f"- **{scenario}**: " + " and ".join(parts) + "."


def targets(r: dict, fifo: dict | None) -> str:
    """The kueue setup's figures against the issue's targets, for its scenario."""
    busy = r["busy_fraction_while_waiting"] or 0
    checks = [f"busy while work waits >= 0.95: {'met' if busy >= 0.95 else 'MISSED'}"]
    if r["scenario"] == "mixed":
        checks.append(f"short p95 wait <= one long item ({r['long_item_seconds']} s): "
                      f"{'met' if (r['short_wait']['p95'] or 1e9) <= r['long_item_seconds'] else 'MISSED'}")
    if r["scenario"] == "stream":
        turnover = r["turnover_gaps"]["pod_ended_to_next_running"]["p95"] or 0.0
        bound = r["short_pod_seconds_max"] + turnover
        worst = r["long_below_share"]["all"]["max"]
        checks.append(f"long work back at its nominal share within one short pod + a pod turnover (this run's p95: "
                      f"{r['short_pod_seconds_max']:.2f} + {turnover:.2f} s): "
                      f"{'met' if worst is not None and worst <= bound else 'MISSED'} (longest {fmt(worst)})")
    if fifo and r["scenario"] == "mixed":
        checks.append("better than FIFO on busy fraction: " + (
            "yes" if busy > (fifo["busy_fraction_while_waiting"] or 0) else "NO"))
        checks.append("better than FIFO on short p95 wait: " + (
            "yes" if (r["short_wait"]["p95"] or 1e9) < (fifo["short_wait"]["p95"] or 1e9) else "NO"))
    return f"Targets ({r['scenario']}, kueue): " + "; ".join(checks) + "."


def table(res: dict) -> str:
    cfg = res["config"]
    runs = res["setups"]
    scenarios = list(dict.fromkeys(r.get("scenario", "mixed") for r in runs))
    lines = [
        f"Time scale {cfg['speedup']:g}x: one long item (85 frames, ~{LONG_GPU_S:.0f} GPU-s) runs "
        f"{LONG_GPU_S:.0f} s / {cfg['speedup']:g} = {LONG_GPU_S / cfg['speedup']:.1f} s, a short one (31 or 49 "
        f"frames, ~{SHORT_GPU_S['1']:.0f}/{SHORT_GPU_S['1.6']:.0f} GPU-s) on its 2-GPU pod "
        f"{SHORT_GPU_S['1'] / cfg['speedup'] / GPUS_PER_POD:.1f}-{SHORT_GPU_S['1.6'] / cfg['speedup'] / GPUS_PER_POD:.1f}"
        f" s; stopped items {'start over (--no-resume)' if cfg['no_resume'] else 'resume from their checkpoints'}.",
        "", *[describe(s, next(r["scenario_config"] for r in runs if r.get("scenario") == s), cfg) for s in scenarios],
        "",
        "| scenario | setup | videos (short) | makespan | lower bound | makespan / bound | useful GPU-s / (8 x makespan) | "
        "busy while work waits | short wait p50 | short wait p95 | p95 / long item | long below its share "
        "while it waits: max (n) | evictions (Jobs) | pods killed (GPU-s of work lost) | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        w = r["short_wait"]
        ratio = f"{w['p95'] / r['long_item_seconds']:.2f}" if w["p95"] is not None else "—"
        below = r.get("long_below_share", {}).get("all", {})
        lines.append(
            f"| {r.get('scenario', 'mixed')} | {r['setup']} | {r['videos']} ({r['shorts']}) | {r['makespan']:.0f} s | "
            f"{r['makespan_lower_bound']:.0f} s | {r['makespan_over_bound']} | {r['useful_fraction']} | "
            f"{r['busy_fraction_while_waiting']} | {fmt(w['p50'])} | {fmt(w['p95'])} | {ratio} | "
            f"{fmt(below.get('max'))} ({below.get('n', 0)}) | {_evictions(r)} | "
            f"{r['preempted_pods']} ({r['lost_gpu_seconds']}) | {r['load'][0]:.1f} -> {r['load_after'][0]:.1f} |")
    lines.append("")
    for s in scenarios:
        by = {r["setup"]: r for r in runs if r.get("scenario", "mixed") == s}
        if "kueue" in by:
            lines.append(targets(by["kueue"], by.get("fifo")))
    return "\n".join(lines)


def write_docs(res: dict, command: str) -> None:
    write_section("fleet", "A day on 8 GPUs: Kueue setup against FIFO (`scripts/bench/fleet.py`)", command,
                  table(res))

def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenarios", default="mixed", help=f"comma-separated: {', '.join(SCENARIOS)}")
    p.add_argument("--setups", default="kueue,fifo", help=f"comma-separated: {', '.join(SETUPS)}")
    p.add_argument("--speedup", type=float, default=20.0, help="cost-model seconds per wall second")
    p.add_argument("--window", type=float, default=420.0, help="wall seconds during which work arrives")
    p.add_argument("--batches", type=int, help="CSV batches in all (default: the scenario's)")
    p.add_argument("--batches-at-start", type=int, help="of those, queued at the start (default: the scenario's)")
    p.add_argument("--rows", type=int, help="rows (videos) per CSV batch (default: the scenario's)")
    p.add_argument("--short-share", type=float, help="short videos' share of the 8 GPUs (default: the scenario's)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    p.add_argument("--set", action="append", default=[], metavar="T2V_NAME=VALUE",
                   help="a controller setting for every setup of this run (repeatable)")
    p.add_argument("--no-resume", action="store_true",
                   help="the pod stand-in throws a stopped item's denoising away (the job image before checkpoints)")
    p.add_argument("--queueing", choices=QUEUEING_STRATEGIES,
                   help="queueingStrategy of kueue/'s two ClusterQueues for this run (default: as shipped)")
    p.add_argument("--timeout", type=float, default=1500, help="seconds to wait for every video per setup")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--write-docs", action="store_true")
    args = p.parse_args()
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    if set(setups) - set(SETUPS):
        p.error(f"--setups: unknown {sorted(set(setups) - set(SETUPS))}; known: {', '.join(SETUPS)}")
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if set(scenarios) - set(SCENARIOS):
        p.error(f"--scenarios: unknown {sorted(set(scenarios) - set(SCENARIOS))}; known: {', '.join(SCENARIOS)}")
    results = []
    with control_plane() as plane:
        plane.apply_kueue(args.queueing)
        plane.apply(fifo_docs() + batch_job_docs())
        plane.wait_cluster_queues([*KUEUE_QUEUES, "t2v-fifo"])
        for scenario in scenarios:
            sargs = scenario_args(args, scenario)
            schedule = arrivals(sargs)
            work = sum((a.rows * LONG_GPU_S if a.kind == "batch" else
                        SHORT_GPU_S[a.body["seconds"]]) for a in schedule) / args.speedup
            log(f"scenario {scenario}: {len(schedule)} arrivals, {work:.0f} GPU-s of work: "
                f"at least {work / GPUS:.0f} s on {GPUS} GPUs")
            for name in setups:
                log(f"scenario {scenario}, setup {name}")
                r = run_setup(plane, name, sargs, schedule)
                r["scenario"] = scenario
                r["scenario_config"] = {k: getattr(sargs, k) for k in SCENARIOS[scenario]}
                results.append(r)
    res = {"config": {k: v for k, v in vars(args).items() if k not in ("json", "write_docs")},
           "setups": results}
    print(table(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=str))
    if args.write_docs:
        write_docs(res, "python scripts/bench/fleet.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
