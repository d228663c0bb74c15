#!/usr/bin/env python3
"""Chaos for the embedded mode: SIGKILL the server and job processes at random moments while
videos are submitted and cancelled, restart, and check that nothing is lost or run twice.

    .venv/bin/python scripts/chaos/embedded.py --iterations 30 --json out.json

Talks only to 127.0.0.1. Prints a summary table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from jobcontract.storage import open_store  # noqa: E402
from scripts.chaos.invariants import check  # noqa: E402
from scripts.harness.server import start_server  # noqa: E402

SMALL = {"size": "256x144", "num_frames": 7}


def job_pids(data_dir: Path) -> list[int]:
    """Live job processes the runner started (their pid files)."""
    pids = []
    for f in (data_dir / "runner").glob("*.pid"):
        try:
            pid = int(f.read_text())
            os.kill(pid, 0)
            pids.append(pid)
        except (ValueError, ProcessLookupError, PermissionError):
            pass
    return pids


def submit(http: httpx.Client, accepted: set[str], pending_keys: dict[str, dict], stats: dict) -> None:
    """Submit with an Idempotency-Key; a lost answer is retried later with the same key."""
    key = str(uuid.uuid4())
    body = {"prompt": f"chaos {key[:8]}", "num_inference_steps": random.choice([2, 3, 6]), **SMALL}
    pending_keys[key] = body
    stats["submissions"] += 1
    retry_pending(http, accepted, pending_keys)


def retry_pending(http: httpx.Client, accepted: set[str], pending_keys: dict[str, dict]) -> None:
    for key, body in list(pending_keys.items()):
        try:
            r = http.post("/v1/videos", json=body, headers={"Idempotency-Key": key})
        except httpx.HTTPError:
            return
        if r.status_code == 200:
            accepted.add(r.json()["id"])
            del pending_keys[key]


def run(iterations: int, seed: int, out: Path | None) -> dict:
    random.seed(seed)
    data = Path(tempfile.mkdtemp(prefix="t2v-chaos-"))
    env = {"T2V_RUNNER_SLOTS": "2", "T2V_ITEMS_PER_JOB": "2", "T2V_MAX_ATTEMPTS": "6"}
    server = start_server(data, env=env)
    http = httpx.Client(base_url=server.url, timeout=10)
    accepted: set[str] = set()
    pending: dict[str, dict] = {}
    stats = {"iterations": iterations, "seed": seed, "submissions": 0, "cancels": 0, "server_kills": 0,
             "job_kills": 0, "restarts": 0}
    t0 = time.monotonic()
    for _ in range(iterations):
        for _ in range(random.randint(1, 4)):
            submit(http, accepted, pending, stats)
        if accepted and random.random() < 0.3:
            try:
                http.post(f"/v1/videos/{random.choice(sorted(accepted))}/cancel")
                stats["cancels"] += 1
            except httpx.HTTPError:
                pass
        time.sleep(random.uniform(0.2, 2.5))
        fault = random.random()
        if fault < 0.35:
            for pid in random.sample(job_pids(data), k=min(1, len(job_pids(data)))):
                try:
                    os.killpg(pid, signal.SIGKILL)
                    stats["job_kills"] += 1
                except ProcessLookupError:
                    pass
        elif fault < 0.6:
            server.kill()
            stats["server_kills"] += 1
            time.sleep(random.uniform(0, 1.0))
            server = start_server(data, env=env, port=server.port)
            stats["restarts"] += 1
            retry_pending(http, accepted, pending)
    retry_pending(http, accepted, pending)
    # Settle: wait for every accepted video to end (restarts keep going at the same port).
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        page = http.get("/v1/videos", params={"limit": 100, "status": "queued"}).json()["data"]
        running = http.get("/v1/videos", params={"limit": 100, "status": "in_progress"}).json()["data"]
        if not page and not running and not pending:
            break
        time.sleep(1)
    server.stop()
    report = check(db_url=f"sqlite:///{data / 't2v.db'}", store=open_store(f"file://{data / 'objects'}"),
                   accepted=accepted, job_logs=data / "runner" / "logs")
    summary = {**stats, "accepted": len(accepted), "unanswered_submissions": len(pending),
               "videos": report.videos, "statuses": report.statuses, "violations": report.violations,
               "seconds": round(time.monotonic() - t0, 1), "data_dir": str(data)}
    print_table(summary)
    if out:
        out.write_text(json.dumps(summary, indent=2))
    return summary


def print_table(s: dict) -> None:
    rows = [("iterations", s["iterations"]), ("submissions", s["submissions"]), ("accepted videos", s["accepted"]),
            ("cancels", s["cancels"]), ("server SIGKILLs", s["server_kills"]), ("job SIGKILLs", s["job_kills"]),
            ("final statuses", ", ".join(f"{k} {v}" for k, v in sorted(s["statuses"].items()))),
            ("invariant violations", len(s["violations"])), ("seconds", s["seconds"])]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    for v in s["violations"]:
        print("VIOLATION:", v)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--seed", type=int, default=int(time.time()))
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    summary = run(args.iterations, args.seed, args.json)
    return 1 if summary["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
