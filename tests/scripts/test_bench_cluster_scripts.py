"""The cluster benchmarks (scripts/bench/cluster.py, fleet.py) parse their arguments and compute their
figures right; running them needs the control plane and ~10 minutes each, so no test runs them."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.bench import fleet
from scripts.bench.cluster import summarize
from scripts.bench.controller_proc import request_kind

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("script", ["cluster.py", "fleet.py"])
def test_help_imports_everything_it_needs(script: str) -> None:
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench" / script), "--help"], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "--write-docs" in p.stdout


@pytest.mark.parametrize(("method", "url", "kind"), [
    ("GET", "https://h/apis/batch/v1/namespaces/t2v/jobs?labelSelector=a", "LIST jobs"),
    ("GET", "https://h/apis/batch/v1/namespaces/t2v/jobs?labelSelector=a&watch=True", "WATCH jobs"),
    ("POST", "https://h/apis/batch/v1/namespaces/t2v/jobs", "POST jobs"),
    ("GET", "https://h/apis/visibility.kueue.x-k8s.io/v1beta2/namespaces/t2v/localqueues/long/pendingworkloads",
     "GET localqueues/pendingworkloads"),
    ("PUT", "https://h/apis/coordination.k8s.io/v1/namespaces/t2v/leases/t2v-controller", "PUT leases"),
    ("GET", "https://h/api/v1/namespaces/t2v/pods?fieldSelector=x", "LIST pods"),
], ids=["list", "watch", "create", "visibility", "lease", "core-list"])
def test_controller_requests_are_counted_by_verb_and_resource(method: str, url: str, kind: str) -> None:
    assert request_kind(method, url) == kind


def test_fleet_arrivals_are_the_same_for_every_setup_and_fill_the_gpus() -> None:
    args = argparse.Namespace(seed=7, batches=5, batches_at_start=3, rows=64, window=420.0, speedup=20.0,
                              short_share=0.2)
    a, b = fleet.arrivals(args), fleet.arrivals(args)
    assert a == b
    assert [x.at for x in a if x.kind == "batch"] == [0.0, 0.0, 0.0, 93.3, 186.7]
    shorts = [x for x in a if x.kind == "short"]
    work = sum(fleet.SHORT_GPU_S[x.body["seconds"]] for x in shorts) / args.speedup
    assert 0.15 < work / (fleet.GPUS * args.window) < 0.25  # about the asked-for 20 % of the GPUs
    assert round(fleet.LONG_GPU_S) == 139 and all(s < 120 for s in fleet.SHORT_GPU_S.values())


@pytest.mark.parametrize(("scenario", "batches", "share"), [
    ("short-only", 0, (0.85, 1.15)), ("long-only", 5, (0.0, 0.0)), ("stream", 6, (0.65, 0.95))])
def test_fleet_single_class_scenarios_send_only_their_class(scenario: str, batches: int, share: tuple) -> None:
    base = argparse.Namespace(seed=7, batches=None, batches_at_start=None, rows=None, window=420.0, speedup=20.0,
                              short_share=None)
    args = fleet.scenario_args(base, scenario)
    a = fleet.arrivals(args)
    assert sum(x.kind == "batch" for x in a) == batches
    work = sum(fleet.SHORT_GPU_S[x.body["seconds"]] for x in a if x.kind == "short") / args.speedup
    assert share[0] <= work / (fleet.GPUS * args.window) <= share[1]
    # The command line still wins over the scenario's defaults.
    assert fleet.scenario_args(argparse.Namespace(**{**vars(base), "rows": 8}), scenario).rows == 8


def test_fleet_long_below_share_splits_reclaim_waits_from_turnovers() -> None:
    from scripts.bench.kubestack import JobSeen, PodSeen

    # Short work holds all 8 GPUs from 0 to 10; long work arrives at 5 (videos L1, L2; Jobs at 5.25).
    # Two short pods end at 6 and 8: Kueue admits long's Jobs at 6.25 and 8.25, so long work stops
    # waiting below its nominal 4 GPUs at 8.25 (a reclaim wait of 3.25 s). L3 arrives at 11 while long
    # holds 4; long's first pod ends at 12 and L3 is admitted at 13: long waits at 2 GPUs for 1 s with
    # nothing of short's borrowed (a turnover).
    jobs = {f"s{i}": JobSeen(videos=[f"S{i}"], created=0.0, queue="short", suspends=[(0.0, True), (0.0, False)],
                             finished=10.0) for i in range(4)}
    jobs |= {"l1": JobSeen(videos=["L1"], created=5.25, queue="long", suspends=[(5.25, True), (6.25, False)],
                           finished=12.0),
             "l2": JobSeen(videos=["L2"], created=5.25, queue="long", suspends=[(5.25, True), (8.25, False)],
                           finished=20.0),
             "l3": JobSeen(videos=["L3"], created=11.0, queue="long", suspends=[(11.0, True), (13.0, False)],
                           finished=20.0)}
    pods = [PodSeen(job=f"s{i}", index=0, created=0.0, running=0.0, ended=end, phase="Succeeded", gpus=2)
            for i, end in enumerate([6.0, 8.0, 10.0, 10.0])]
    pods += [PodSeen(job="l1", index=0, created=6.3, running=6.5, ended=12.0, phase="Succeeded", gpus=2),
             PodSeen(job="l2", index=0, created=8.3, running=8.5, ended=20.0, phase="Succeeded", gpus=2),
             PodSeen(job="l3", index=0, created=13.1, running=13.25, ended=20.0, phase="Succeeded", gpus=2)]
    videos = {f"S{i}": {"queue": "short", "created_at": 0.0} for i in range(4)}
    videos |= {"L1": {"queue": "long", "created_at": 5.0}, "L2": {"queue": "long", "created_at": 5.0},
               "L3": {"queue": "long", "created_at": 11.0}}
    out = fleet.long_below_share(jobs, pods, videos, 0.0, 20.0)
    assert out["nominal_gpus"] == 4
    assert out["reclaim"]["n"] == 1 and out["reclaim"]["max"] == pytest.approx(3.25)
    assert out["all"]["n"] == 2 and out["all"]["p50"] == pytest.approx(1.0)


def test_fleet_busy_time_counts_only_inside_the_waiting_windows_and_caps_at_8_gpus() -> None:
    pods = [(0.0, 10.0, 2), (5.0, 15.0, 8)]
    assert fleet._busy_within(pods, [(0.0, 20.0)]) == 2 * 5 + 8 * 5 + 8 * 5  # 10 GPUs asked: 8 counted
    assert fleet._busy_within(pods, [(0.0, 6.0), (12.0, 13.0)]) == 2 * 5 + 8 * 1 + 8 * 1
    assert fleet._merge([(0, 2), (1, 3), (5, 6), (7, 7)]) == [(0, 3), (5, 6)]


def test_fleet_eviction_gaps_follow_a_preempted_pod_to_the_next_pod_running() -> None:
    from scripts.bench.kubestack import JobSeen, PodSeen

    jobs = {"victim": JobSeen(videos=["v1"], created=0.0, suspends=[(0.0, True), (2.0, False), (10.0, True)]),
            "short": JobSeen(videos=["v2"], created=9.0, suspends=[(9.0, True), (11.0, False)])}
    pods = [PodSeen(job="victim", index=0, created=2.0, running=3.0, ended=10.25, phase="Failed", gpus=2),
            PodSeen(job="short", index=0, created=11.0, running=11.5, ended=14.0, phase="Succeeded", gpus=2),
            PodSeen(job="victim", index=0, created=14.0, running=15.0, ended=20.0, phase="Succeeded", gpus=2)]
    gaps = fleet.eviction_gaps(jobs, pods)
    # Only the killed pod counts: suspended at 10 -> ended at 10.25 -> the short pod Running at 11.5.
    assert gaps["suspended_to_pod_ended"]["n"] == gaps["pod_ended_to_next_running"]["n"] == 1
    assert gaps["suspended_to_pod_ended"]["p50"] == pytest.approx(0.25)
    assert gaps["pod_ended_to_next_running"]["p50"] == pytest.approx(1.25)


def test_fleet_turnover_gaps_split_the_idle_time_between_a_pod_and_the_one_that_takes_its_gpus() -> None:
    from scripts.bench.kubestack import JobSeen, PodSeen

    jobs = {"a": JobSeen(videos=["v1"], created=0.0, suspends=[(0.0, True), (1.0, False)], finished=10.25),
            "b": JobSeen(videos=["v2"], created=0.0, suspends=[(0.0, True), (10.5, False)]),
            "early": JobSeen(videos=["v3"], created=0.0, suspends=[(0.0, True), (1.0, False)])}
    pods = [PodSeen(job="a", index=0, created=1.1, bound=1.2, running=1.5, ended=10.0, phase="Succeeded", gpus=2),
            # admitted before pod a ended: it did not wait for a's GPUs, so it is not a's successor
            PodSeen(job="early", index=0, created=1.1, bound=1.2, running=10.2, ended=20.0, phase="Succeeded",
                    gpus=2),
            PodSeen(job="b", index=0, created=10.75, bound=10.8, running=11.0, ended=20.0, phase="Succeeded",
                    gpus=2)]
    gaps = fleet.turnover_gaps(jobs, pods)
    assert gaps["pod_ended_to_job_finished"]["p50"] == pytest.approx(0.25)
    assert gaps["pod_ended_to_next_running"]["n"] == 1  # a -> b only; nothing follows the last two
    assert gaps["pod_ended_to_next_unsuspended"]["p50"] == pytest.approx(0.5)
    assert gaps["unsuspended_to_pod_created"]["p50"] == pytest.approx(0.25)
    assert gaps["pod_created_to_bound"]["p50"] == pytest.approx(0.05)
    assert gaps["bound_to_running"]["p50"] == pytest.approx(0.2)
    assert gaps["pod_ended_to_next_running"]["p50"] == pytest.approx(1.0)


def test_cluster_summary_splits_stages_and_ours() -> None:
    rec = {"status": "completed", "submitted": 0.0, "job_created": 0.5, "admitted": 10.5, "pod_running": 11.0,
           "pod_ended": 12.0, "job_finished": 12.5, "db_completed": 12.6, "job_active": 10.8,
           "db_in_progress": 11.0, "evictions": 0}
    s = summarize([rec], 20.0, 1, {"controller": 0.1, "api": 0.2}, {"controller": {"POST jobs": 1},
                                                                    "apiserver": {"POST jobs": 3}}, {})
    assert s["stages"]["Job created -> Workload admitted"]["p50"] == 10.0
    assert round(s["overhead_ours"]["p50"], 3) == 0.6  # 0.5 s to the Job + 0.1 s to the DB
    assert round(s["overhead_all_but_quota_wait_and_run"]["p50"], 3) == 1.6  # 12.6 - 10 (quota) - 1 (run)
    assert round(s["watcher_lag"]["p95"], 3) == 0.2
