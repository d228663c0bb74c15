#!/usr/bin/env python3
"""Load: two webapp replicas on one PostgreSQL, N concurrent clients submitting and polling.

    .venv/bin/python scripts/chaos/load.py --clients 200 --seconds 60 --json out.json

The replicas run API-only (kubernetes backend, no controller), so the load is the API and the
database, not generation. Everything listens on 127.0.0.1. Prints p50/p99 per request kind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

from tests.plugins.postgres import PostgresServer  # noqa: E402
from tests.plugins.server import start_server  # noqa: E402
from tests.support.net import free_port  # noqa: E402


def pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def client(urls: list[str], n: int, until: float, lat: dict[str, list[float]], errors: list[str]) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        i = 0
        while time.monotonic() < until:
            base = urls[(n + i) % len(urls)]
            i += 1
            t0 = time.perf_counter()
            try:
                r = await http.post(f"{base}/v1/videos", json={"prompt": f"load {n}-{i}", "model": "tiny"})
                lat["submit"].append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors.append(f"submit {r.status_code}: {r.text[:200]}")
                    continue
                vid = r.json()["id"]
                for _ in range(3):
                    other = urls[(n + i + 1) % len(urls)]  # poll through the other replica
                    t0 = time.perf_counter()
                    r = await http.get(f"{other}/v1/videos/{vid}")
                    lat["status"].append(time.perf_counter() - t0)
                    if r.status_code != 200:
                        errors.append(f"status {r.status_code}: {r.text[:200]}")
                t0 = time.perf_counter()
                r = await http.get(f"{base}/v1/videos", params={"limit": 20})
                lat["list"].append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors.append(f"list {r.status_code}: {r.text[:200]}")
            except httpx.HTTPError as e:
                errors.append(f"{type(e).__name__}: {e}")


def run(clients: int, seconds: float, out: Path | None) -> dict:
    root = Path(tempfile.mkdtemp(prefix="t2v-load-"))
    pg = PostgresServer(Path(tempfile.mkdtemp(prefix="t2v-pg-")), free_port())  # its own dir: postgres owns it
    pg.start()
    servers = []
    try:
        db = pg.create_db("t2v_load")
        env = {"T2V_DATABASE_URL": db, "T2V_BACKEND": "kubernetes", "T2V_AUTH_REQUIRED": "false",
               "T2V_LOG_LEVEL": "WARNING"}
        servers = [start_server(root / f"replica{i}", env={**env, "T2V_STORAGE_URL": f"file://{root / 'objects'}"})
                   for i in range(2)]
        lat: dict[str, list[float]] = {"submit": [], "status": [], "list": []}
        errors: list[str] = []
        until = time.monotonic() + seconds

        async def main() -> None:
            await asyncio.gather(*(client([s.url for s in servers], n, until, lat, errors) for n in range(clients)))

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
        pg.stop()
        shutil.rmtree(pg.root, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
    total = sum(len(v) for v in lat.values())
    summary = {"clients": clients, "seconds": round(wall, 1), "requests": total, "errors": len(errors),
               "error_samples": errors[:10], "requests_per_second": round(total / wall, 1),
               "latency_ms": {k: {"n": len(v), "p50": round(1000 * pct(v, 50), 1), "p99": round(1000 * pct(v, 99), 1),
                                  "mean": round(1000 * statistics.fmean(v), 1) if v else 0.0}
                              for k, v in lat.items()}}
    print(f"{clients} clients, {summary['seconds']} s, {total} requests ({summary['requests_per_second']}/s), "
          f"{len(errors)} errors")
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
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    return 1 if run(args.clients, args.seconds, args.json)["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
