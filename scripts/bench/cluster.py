#!/usr/bin/env python3
"""Cluster-mode overhead: 500 videos submitted at once, through the API, Kueue and kwok to `completed`.

    .venv/bin/python scripts/bench/cluster.py                       # 500 videos, 0.5 s each
    .venv/bin/python scripts/bench/cluster.py --videos 100 --json out.json
    .venv/bin/python scripts/bench/cluster.py --set T2V_RESYNC_SECONDS=5   # a controller setting
    .venv/bin/python scripts/bench/cluster.py --queueing BestEffortFIFO    # kueue/ with the other strategy

Brings up its own loopback control plane (scripts/testcluster: etcd, kube-apiserver,
controller-manager, scheduler, kwok with one 8-GPU node, Kueue v0.19.2) in a temp state folder,
applies kueue/ as shipped, and runs t2v in cluster mode on it (scripts/bench/kubestack.py):
PostgreSQL, `t2v serve` (kubernetes backend), the controller as its own process (what
`t2v controller` runs, with counters), the kwok pod stand-in with a fixed run time per video.
Half the videos are `tiny` (short queue), half default Mochi (long queue), so both queues run.

Per video it measures submit -> Job created -> Workload admitted -> pod running -> pod done ->
Job complete -> `completed` in the DB; the watcher lag (Job status change seen on a watch ->
the DB row); the controller's CPU seconds and API requests per video, the API server's
requests per video (apiserver_request_total before/after, every client), and Kueue's CPU seconds.

Prints a table and writes JSON; `--write-docs` rewrites its section of docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from scripts.bench.docsection import write_section  # noqa: E402
from scripts.bench.kubestack import KUEUE_QUEUES, QUEUEING_STRATEGIES, T2VStack, control_plane, log, pct  # noqa: E402

NAMESPACE = "t2v"  # kueue/40-localqueues.yaml makes it, with the LocalQueues
TARGET_OVERHEAD_P95 = 2.0
TARGET_LAG_P95 = 1.0


def video_bodies(n: int) -> list[dict]:
    """Half tiny (short queue), half default Mochi (~163 GPU-s estimated: long queue)."""
    return [{"prompt": f"benchmark clip {i}", "model": "tiny" if i % 2 == 0 else "mochi-1-preview"} for i in range(n)]


def per_video(stack: T2VStack) -> list[dict]:
    """One record per video: the stage times, from the DB rows and what the observer saw."""
    obs = stack.observer
    with obs.lock:
        jobs = dict(obs.jobs)
        pods = list(obs.pods.values())
    job_of = {v: name for name, j in jobs.items() for v in j.videos}
    pods_of: dict[str, list] = {}
    for p in pods:
        pods_of.setdefault(p.job, []).append(p)
    out = []
    for vid, v in stack.videos().items():
        name = job_of.get(vid)
        j = jobs.get(name) if name else None
        done = [p for p in pods_of.get(name, []) if p.phase == "Succeeded"]
        pod = max(done, key=lambda p: p.ended) if done else None
        in_progress = next((at for at, _, dst in v.get("events", []) if dst == "in_progress"), None)
        out.append({
            "id": vid, "status": v["status"], "queue": v["queue"], "job": name,
            "submitted": v["created_at"], "db_in_progress": in_progress, "db_completed": v["completed_at"],
            "job_created": j.created if j else None, "admitted": j.admitted if j else None,
            "admitted_server": j.admitted_server if j else None, "job_active": j.active if j else None,
            "job_finished": j.finished if j else None, "evictions": j.evictions if j else 0,
            "pod_bound": pod.bound if pod else None, "pod_running": pod.running if pod else None,
            "pod_ended": pod.ended if pod else None,
        })
    return out


def d(r: dict, a: str, b: str) -> float | None:
    return None if r[a] is None or r[b] is None else r[b] - r[a]


STAGES = [
    # name, from, to, whose
    ("submit -> Job created", "submitted", "job_created", "t2v: API + dispatcher"),
    ("Job created -> Workload admitted", "job_created", "admitted", "Kueue (mostly waiting for quota)"),
    ("admitted -> pod running", "admitted", "pod_running", "job controller, scheduler, kwok"),
    ("pod running -> pod done", "pod_running", "pod_ended", "the pod (fixed run time)"),
    ("pod done -> Job complete", "pod_ended", "job_finished", "job controller"),
    ("Job complete -> DB completed", "job_finished", "db_completed", "t2v: watcher"),
    ("Job active -> DB in_progress", "job_active", "db_in_progress", "t2v: watcher"),
    ("submit -> Job created (cumulative)", "submitted", "job_created", ""),
    ("submit -> admitted", "submitted", "admitted", ""),
    ("submit -> pod running", "submitted", "pod_running", ""),
    ("submit -> DB completed", "submitted", "db_completed", ""),
]


def summarize(records: list[dict], wall: float, n: int, cpu: dict, requests: dict, ctl: dict) -> dict:
    ok = [r for r in records if r["status"] == "completed"]
    stages = {}
    for name, a, b, whose in STAGES:
        vals = [x for r in ok if (x := d(r, a, b)) is not None]
        stages[name] = {"p50": pct(vals, 50), "p95": pct(vals, 95), "max": max(vals) if vals else None,
                        "n": len(vals), "whose": whose}
    ours, non_wait = [], []
    lags = []
    for r in ok:
        parts = [d(r, "submitted", "job_created"), d(r, "job_finished", "db_completed")]
        if None not in parts:
            ours.append(sum(parts))
        total, wait, run = d(r, "submitted", "db_completed"), d(r, "job_created", "admitted"), d(r, "pod_running",
                                                                                              "pod_ended")
        if None not in (total, wait, run):
            non_wait.append(total - wait - run)
        for lag in (d(r, "job_finished", "db_completed"), d(r, "job_active", "db_in_progress")):
            if lag is not None:
                lags.append(lag)
    passes = ctl.get("passes", [])
    full = [p[1] for p in passes if len(p) < 4 or p[3] < 0]
    quick = [p[1] for p in passes if len(p) >= 4 and p[3] >= 0]
    creates = ctl.get("creates", [])
    return {
        "videos": n, "completed": len(ok), "wall_seconds": round(wall, 1),
        "stages": stages,
        "overhead_ours": {"p50": pct(ours, 50), "p95": pct(ours, 95), "max": max(ours) if ours else None},
        "overhead_all_but_quota_wait_and_run": {"p50": pct(non_wait, 50), "p95": pct(non_wait, 95),
                                                "max": max(non_wait) if non_wait else None},
        "watcher_lag": {"p50": pct(lags, 50), "p95": pct(lags, 95), "max": max(lags) if lags else None,
                        "n": len(lags)},
        "controller_cpu_seconds": round(cpu["controller"], 2),
        "controller_cpu_per_video": round(cpu["controller"] / n, 4),
        "api_cpu_seconds": round(cpu["api"], 2),
        "kueue_cpu_seconds": round(cpu.get("kueue", 0.0), 2),
        "full_passes": len(full),
        "full_pass_seconds": {"p50": pct(full, 50), "p95": pct(full, 95), "max": max(full) if full else None},
        "quick_passes": len(quick),
        "quick_pass_seconds": {"p50": pct(quick, 50), "p95": pct(quick, 95), "max": max(quick) if quick else None},
        "job_posts": len(creates),
        "job_post_seconds": {"p50": pct(creates, 50), "p95": pct(creates, 95), "max": max(creates) if creates else None},
        "controller_requests": requests["controller"],
        "controller_requests_per_video": round(sum(requests["controller"].values()) / n, 2),
        "apiserver_requests": requests["apiserver"],
        "apiserver_requests_per_video": round(sum(requests["apiserver"].values()) / n, 2),
        "evicted_jobs": sum(1 for r in ok if r["evictions"]),
    }


def fmt(x: float | None, unit: str = "s") -> str:
    return "—" if x is None else (f"{x * 1000:.0f} ms" if unit == "ms" or abs(x) < 1 else f"{x:.2f} s")


def table(res: dict) -> str:
    s = res["summary"]
    lines = [f"{s['videos']} videos submitted at once ({res['config']['run_seconds']} s run time each, "
             f"{res['config']['concurrency']} concurrent POSTs), {s['completed']} completed in {s['wall_seconds']} s; "
             f"controller settings: {res['config']['controller_env'] or 'shipped defaults'}; "
             f"load average {res['load'][0]:.1f} before, {res['load_after'][0]:.1f} after (2 cores)", "",
             "| stage | whose | p50 | p95 | max |", "|---|---|---|---|---|"]
    for name, st in s["stages"].items():
        lines.append(f"| {name} | {st['whose']} | {fmt(st['p50'])} | {fmt(st['p95'])} | {fmt(st['max'])} |")
    o, a, w = s["overhead_ours"], s["overhead_all_but_quota_wait_and_run"], s["watcher_lag"]
    lines += [
        f"| **t2v's own overhead** (submit -> Job + Job complete -> DB) | t2v | {fmt(o['p50'])} | "
        f"**{fmt(o['p95'])}** | {fmt(o['max'])} |",
        f"| everything but Kueue's quota wait and the run | all | {fmt(a['p50'])} | **{fmt(a['p95'])}** | "
        f"{fmt(a['max'])} |",
        f"| **watcher lag** (Job status change -> DB, both kinds above) | t2v | {fmt(w['p50'])} | "
        f"**{fmt(w['p95'])}** | {fmt(w['max'])} |", "",
        f"Target: overhead p95 < {TARGET_OVERHEAD_P95:.0f} s ({'met' if _lt(a['p95'], TARGET_OVERHEAD_P95) else 'MISSED'}"
        f" counting everything but quota wait and run; {'met' if _lt(o['p95'], TARGET_OVERHEAD_P95) else 'MISSED'} "
        f"for t2v's own stages), watcher lag p95 < {TARGET_LAG_P95:.0f} s "
        f"({'met' if _lt(w['p95'], TARGET_LAG_P95) else 'MISSED'}).", "",
        f"Controller: {s['controller_cpu_seconds']} CPU s in all = **{s['controller_cpu_per_video'] * 1000:.1f} ms per "
        f"video**; {_passes(s)}; "
        f"**{s['controller_requests_per_video']} API requests per video** "
        f"({_top(s['controller_requests'], 6)}). API server: **{s['apiserver_requests_per_video']} requests per "
        f"video** from every client ({_top(s['apiserver_requests'], 8)}). `t2v serve`: {s['api_cpu_seconds']} CPU s; "
        f"Kueue: {s.get('kueue_cpu_seconds', '—')} CPU s.",
    ]
    return "\n".join(lines)


def _passes(s: dict) -> str:
    out = []
    for kind, label in (("full", "full passes"), ("quick", "watch-driven passes over changed Jobs")):
        st = s[f"{kind}_pass_seconds"]
        if s[f"{kind}_passes"]:
            out.append(f"{s[f'{kind}_passes']} {label} (p50 {fmt(st['p50'])}, p95 {fmt(st['p95'])}, "
                       f"max {fmt(st['max'])})")
    st = s["job_post_seconds"]
    if s["job_posts"]:
        out.append(f"{s['job_posts']} Job POSTs (p50 {fmt(st['p50'])}, p95 {fmt(st['p95'])})")
    return ", ".join(out)


def _lt(x: float | None, limit: float) -> bool:
    return x is not None and x < limit


def _top(c: dict, k: int) -> str:
    return ", ".join(f"{name} {n}" for name, n in Counter(c).most_common(k))


def write_docs(results: list[dict], command: str) -> None:
    write_section("cluster", "Cluster mode overhead (`scripts/bench/cluster.py`)", command,
                  "\n\n".join(table(r) for r in results))

def run_one(plane, args: argparse.Namespace, env: dict[str, str]) -> dict:
    root = Path(tempfile.mkdtemp(prefix="t2v-bench-cluster-"))
    stack = T2VStack(plane, NAMESPACE, root, controller_env=env, run_seconds=args.run_seconds, db=args.db,
                     keep_files=args.keep)
    try:
        stack.start()
        time.sleep(2)
        load = os.getloadavg()
        snap = stack.controller_snapshot()
        m0 = plane.apiserver_requests()
        cpu0, api0, kueue0 = stack.controller_cpu(), stack.api_cpu(), plane.cpu_seconds("kueue")
        t0 = time.time()
        ids = stack.submit_many(video_bodies(args.videos), concurrency=args.concurrency)
        log(f"{len(ids)} videos submitted in {time.time() - t0:.1f} s")
        if not stack.wait_terminal(len(ids), timeout=args.timeout):
            log(f"timed out: {dict(stack.counts())}")
        wall = time.time() - t0
        time.sleep(1)  # the observer's last events
        m1 = plane.apiserver_requests()
        cpu = {"controller": stack.controller_cpu() - cpu0, "api": stack.api_cpu() - api0,
               "kueue": plane.cpu_seconds("kueue") - kueue0}
        load_after = os.getloadavg()
        ctl = stack.stop_controller()
        ctl_requests = Counter(ctl.get("requests", {}))
        ctl_requests.subtract(snap.get("requests", {}))
        ctl["passes"] = [p for p in ctl.get("passes", []) if p[0] >= t0]
        records = per_video(stack)
        summary = summarize(records, wall, len(ids), cpu,
                            {"controller": {k: v for k, v in ctl_requests.items() if v},
                             "apiserver": {k: v for k, v in (m1 - m0).items() if v}}, ctl)
        return {"config": {"videos": args.videos, "run_seconds": args.run_seconds, "concurrency": args.concurrency,
                           "db": args.db, "controller_env": env},
                "load": load, "load_after": load_after, "summary": summary, "records": records}
    finally:
        stack.stop()
        plane.delete_namespace_jobs(NAMESPACE)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=500)
    p.add_argument("--run-seconds", type=float, default=0.5, help="the pod stand-in's run time per video")
    p.add_argument("--concurrency", type=int, default=32, help="POSTs in flight while submitting")
    p.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    p.add_argument("--set", action="append", default=[], metavar="T2V_NAME=VALUE",
                   help="a controller/API setting for this run (repeatable)")
    p.add_argument("--queueing", choices=QUEUEING_STRATEGIES,
                   help="queueingStrategy of kueue/'s two ClusterQueues for this run (default: as shipped)")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--json", type=Path, help="write the summary and every video's stage times here")
    p.add_argument("--write-docs", action="store_true")
    p.add_argument("--keep", action="store_true", help="leave the control plane running and the run's files")
    args = p.parse_args()
    env = dict(kv.split("=", 1) for kv in args.set)
    with control_plane(keep=args.keep) as plane:
        plane.apply_kueue(args.queueing)
        plane.wait_cluster_queues(KUEUE_QUEUES)
        result = run_one(plane, args, env)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if args.write_docs:
        write_docs([result], "python scripts/bench/cluster.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
