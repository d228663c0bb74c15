#!/usr/bin/env python3
"""Load: two webapp replicas on one PostgreSQL, N concurrent clients submitting and polling.

    .venv/bin/python scripts/chaos/load.py --clients 200 --seconds 60 --json out.json

The replicas run API-only (kubernetes backend, no controller), so the load is the API and the
database, not generation. Everything listens on 127.0.0.1. Each client behaves like a user of
the API: submit a video, poll its status through the other replica a few times with a short
pause, look at the first page of the list, again until the time is up. Every answer that is
not 2xx and every exception (refused, reset, the client's timeout) counts as an error, by kind.
Clients send no API key, so they are the `default` tenant, which has no submission limits: a
429 here would be a bug, not a limit. Prints requests, errors by kind, what the replicas logged,
requests/s and p50/p99 latency of answered requests per kind.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from scripts.harness.postgres import PostgresServer  # noqa: E402
from scripts.harness.server import start_server  # noqa: E402
from scripts.harness.net import free_port  # noqa: E402

KINDS = ("submit", "status", "list")
EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Timeout|Exit)):")


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `values`."""
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


class Tally:
    """Latencies of answered requests and errors by kind, shared by every client (one event loop)."""

    def __init__(self) -> None:
        self.lat: dict[str, list[float]] = {k: [] for k in KINDS}
        self.errors: collections.Counter[str] = collections.Counter()
        self.samples: list[str] = []
        self.requests = 0

    def error(self, kind: str, what: str, detail: str) -> None:
        """Count one error of `kind` (submit, status, list) by what went wrong; keep a few samples."""
        self.errors[f"{kind}: {what}"] += 1
        if len(self.samples) < 10:
            self.samples.append(f"{kind}: {what}: {detail[:200]}")

    async def call(self, kind: str, request) -> httpx.Response | None:  # noqa: ANN001
        """Time one request; None (and an error counted) unless it answered 2xx."""
        self.requests += 1
        t0 = time.perf_counter()
        try:
            r = await request
        except Exception as e:  # noqa: BLE001 - refused, reset, timed out, anything: all are errors
            self.error(kind, type(e).__name__, f"after {time.perf_counter() - t0:.1f} s: {e!r}")
            return None
        self.lat[kind].append(time.perf_counter() - t0)
        if not r.is_success:
            try:
                code = r.json()["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = ""
            self.error(kind, f"HTTP {r.status_code} {code}".rstrip(), r.text)
            return None
        return r


async def client(urls: list[str], n: int, until: float, tally: Tally, *, timeout: float, polls: int,
                 pause: float) -> None:
    """One user: submit, poll the new video through the other replica, list; until the time is up."""
    async with httpx.AsyncClient(timeout=timeout) as http:
        i = 0
        while time.monotonic() < until:
            base, other = urls[(n + i) % len(urls)], urls[(n + i + 1) % len(urls)]
            i += 1
            r = await tally.call("submit", http.post(f"{base}/v1/videos",
                                                     json={"prompt": f"load {n}-{i}", "model": "tiny"}))
            if r is None:
                await asyncio.sleep(pause)  # as a user would before trying again
                continue
            vid = r.json()["id"]
            for _ in range(polls):
                await asyncio.sleep(pause)
                await tally.call("status", http.get(f"{other}/v1/videos/{vid}"))
            await tally.call("list", http.get(f"{base}/v1/videos", params={"limit": 20}))


def server_log_summary(logs: list[Path]) -> dict[str, int]:
    """Warnings, errors and exception types in the replicas' logs, counted."""
    seen: collections.Counter[str] = collections.Counter()
    for log in logs:
        if not log.exists():
            continue
        for line in log.read_text(errors="replace").splitlines():
            m = EXCEPTION_LINE.match(line)
            if m:
                seen[m[1]] += 1
            elif " WARNING " in line or " ERROR " in line:
                seen[" ".join(line.split()[2:])[:100]] += 1
    return dict(seen.most_common(20))


def run(clients: int, seconds: float, out: Path | None, *, timeout: float = 30.0, polls: int = 3,
        pause: float = 0.5, server_env: dict[str, str] | None = None) -> dict:
    """Start PostgreSQL and two replicas, run the clients for `seconds`, return the summary.

    `server_env` adds `T2V_*` settings to both replicas (the defaults are the service's own).
    """
    root = Path(tempfile.mkdtemp(prefix="t2v-load-"))
    pg = PostgresServer(Path(tempfile.mkdtemp(prefix="t2v-pg-")), free_port())  # its own dir: postgres owns it
    pg.start()
    servers = []
    tally = Tally()
    try:
        db = pg.create_db("t2v_load")
        env = {"T2V_DATABASE_URL": db, "T2V_BACKEND": "kubernetes", "T2V_AUTH_REQUIRED": "false",
               "T2V_LOG_LEVEL": "WARNING", "T2V_STORAGE_URL": f"file://{root / 'objects'}", **(server_env or {})}
        servers = [start_server(root / f"replica{i}", env=env) for i in range(2)]
        until = time.monotonic() + seconds

        async def main() -> None:
            urls = [s.url for s in servers]
            await asyncio.gather(*(client(urls, n, until, tally, timeout=timeout, polls=polls, pause=pause)
                                   for n in range(clients)))

        t0 = time.monotonic()
        # A thread of its own gets a fresh event loop, also when the caller already runs one
        # (pytest with Playwright's sync API keeps a loop on the main thread).
        worker = threading.Thread(target=asyncio.run, args=(main(),))
        worker.start()
        worker.join()
        wall = time.monotonic() - t0
    finally:
        for s in servers:
            s.stop()
        server_log = server_log_summary([s.log for s in servers])
        pg.stop()
        shutil.rmtree(pg.root, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
    errors, requests = sum(tally.errors.values()), tally.requests
    summary = {"clients": clients, "seconds": round(wall, 1), "load_average_1m": round(os.getloadavg()[0], 1),
               "requests": requests, "errors": errors,
               "errors_by_kind": dict(tally.errors.most_common()), "error_samples": tally.samples,
               "server_log": server_log, "requests_per_second": round(requests / wall, 1),
               "latency_ms": {k: {"n": len(v), "p50": round(1000 * pct(v, 50), 1), "p99": round(1000 * pct(v, 99), 1),
                                  "mean": round(1000 * statistics.fmean(v), 1) if v else 0.0}
                              for k, v in tally.lat.items()}}
    print(f"{clients} clients, {summary['seconds']} s, {requests} requests ({summary['requests_per_second']}/s), "
          f"{errors} errors; machine load average {summary['load_average_1m']}")
    for kind, n in summary["errors_by_kind"].items():
        print(f"  {n:>6}  {kind}")
    if server_log:
        print("server log:", json.dumps(server_log))
    print(f"{'request':<8} {'n':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for k, v in summary["latency_ms"].items():
        print(f"{k:<8} {v['n']:>7} {v['p50']:>8} {v['p99']:>8}")
    if out:
        out.write_text(json.dumps(summary, indent=2))
    return summary


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--timeout", type=float, default=30.0, help="client timeout per request, seconds")
    p.add_argument("--polls", type=int, default=3, help="status polls after each submit")
    p.add_argument("--pause", type=float, default=0.5, help="seconds between a client's polls")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    summary = run(args.clients, args.seconds, args.json, timeout=args.timeout, polls=args.polls, pause=args.pause)
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
