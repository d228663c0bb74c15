#!/usr/bin/env python3
"""API and database benchmark: latency of submit, status, list pages (page 1 and page 1,000)
and filtered lists with 100,000 videos in the DB, each as a ratio to a no-op endpoint
(/healthz) on the same server in the same run; plus a 1,000-row CSV upload.

    .venv/bin/python scripts/bench/api.py --db sqlite --rows 100000 --json out.json
    .venv/bin/python scripts/bench/api.py --db postgres

Prints a table and writes JSON; `--write-docs` rewrites the section of docs/performance.md.
Everything runs on 127.0.0.1. The server is API-only (kubernetes backend, no controller) so
generation does not share the CPU with the measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from scripts.bench.docsection import write_section  # noqa: E402
from scripts.harness.postgres import PostgresServer  # noqa: E402
from scripts.harness.server import start_server  # noqa: E402
from scripts.harness.net import free_port  # noqa: E402

STATUSES = ["completed"] * 70 + ["failed"] * 5 + ["cancelled"] * 5 + ["queued"] * 15 + ["in_progress"] * 5


def seed_rows(db_url: str, rows: int) -> None:
    """Insert `rows` videos (and 100 batches) directly, in bulk, after the app's migrations ran."""
    import sqlalchemy as sa

    from core.models import new_id
    from core.db import engine_for, migrate

    migrate(db_url)
    engine = engine_for(db_url)
    now = time.time() - rows
    batches = [new_id("batch") for _ in range(100)]
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO batch (id, tenant, name, total, created_at, metadata_json) VALUES "
                          "(:id, 'default', 'bench', :total, :t, '{}')"),
                  [{"id": b, "total": rows // 200, "t": now} for b in batches])
        chunk = []
        for i in range(rows):
            status = random.choice(STATUSES)
            chunk.append({"id": new_id("video"), "batch": batches[i % 100] if i % 2 else None, "status": status,
                          "t": now + i, "seed": i})
            if len(chunk) == 5000 or i == rows - 1:
                c.execute(sa.text(
                    "INSERT INTO video (id, tenant, batch_id, status, progress, model, prompt, negative_prompt, "
                    "num_frames, width, height, fps, seed, num_inference_steps, guidance_scale, priority, queue, "
                    "metadata_json, created_at, updated_at, attempt, timings) VALUES (:id, 'default', :batch, "
                    ":status, 0, 'tiny', 'a benchmark prompt', '', 31, 432, 240, 30, :seed, 8, 4.5, 'interactive', "
                    "'short', '{}', :t, :t, 0, '{}')"), chunk)
                chunk = []
    # A live database has planner statistics and (PostgreSQL) a visibility map from autovacuum: without
    # them, a freshly bulk-loaded table turns index-only scans into heap fetches (10 ms vs 3 ms for the
    # 15,000-row queue-position count here), which no running service would see.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(sa.text("VACUUM ANALYZE video" if engine.dialect.name == "postgresql" else "ANALYZE"))


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def measure(url: str, make_request, n: int, concurrency: int) -> list[float]:
    """Latencies of `n` requests made `concurrency` at a time."""
    lat: list[float] = []
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        async def one(i: int) -> None:
            async with sem:
                t0 = time.perf_counter()
                r = await make_request(http, i)
                lat.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    raise RuntimeError(f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text[:200]}")
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - t0
    lat.append(wall)  # last element: wall time, split off by the caller
    return lat


def run(db: str, rows: int, n: int, concurrency: int, rounds: int) -> dict:
    root = Path(tempfile.mkdtemp(prefix="t2v-bench-api-"))
    pg = None
    try:
        if db == "postgres":
            pg = PostgresServer(Path(tempfile.mkdtemp(prefix="t2v-pg-")), free_port())  # postgres owns it
            pg.start()
            db_url = pg.create_db("t2v_bench")
        else:
            db_url = f"sqlite:///{root / 't2v.db'}"
        t0 = time.perf_counter()
        seed_rows(db_url, rows)
        seed_seconds = time.perf_counter() - t0
        server = start_server(root / "data", env={"T2V_DATABASE_URL": db_url, "T2V_BACKEND": "kubernetes",
                                                  "T2V_AUTH_REQUIRED": "false", "T2V_LOG_LEVEL": "WARNING"})
        try:
            http = httpx.Client(base_url=server.url, timeout=60)
            first = http.get("/v1/videos", params={"limit": 1}).json()["data"][0]["id"]
            # The cursor 1,000 pages (20,000 rows) down, found by walking ids with large pages.
            after, walked = None, 0
            while walked < 20_000:
                page = http.get("/v1/videos", params={"limit": 100, **({"after": after} if after else {})}).json()
                after, walked = page["last_id"], walked + 100
            deep = after
            batch = http.get("/v1/batches", params={"limit": 1}).json()["data"][0]["id"]
            cases = {
                "no-op (/healthz)": lambda h, i: h.get("/healthz"),
                "status": lambda h, i: h.get(f"/v1/videos/{first}"),
                "list page 1": lambda h, i: h.get("/v1/videos", params={"limit": 20}),
                "list page 1,000": lambda h, i: h.get("/v1/videos", params={"limit": 20, "after": deep}),
                "list status=failed": lambda h, i: h.get("/v1/videos", params={"limit": 20, "status": "failed"}),
                "list batch_id": lambda h, i: h.get("/v1/videos", params={"limit": 20, "batch_id": batch}),
                "submit": lambda h, i: h.post("/v1/videos", json={"prompt": f"bench {i}"}),
            }
            results = {}
            for fn in cases.values():
                asyncio.run(measure(server.url, fn, 20, 4))  # warm-up
            # The reads take turns, `rounds` slices each: a slow spell of this shared machine then falls
            # on every case alike instead of on whichever was running (ratios to the no-op measured
            # minutes apart moved by 2x between runs). Submit goes last, in one go: its new rows would
            # change what page 1 shows.
            reads = [(name, fn) for name, fn in cases.items() if name != "submit"]
            turns = [(name, fn, n // rounds) for name, fn in reads] * rounds + [("submit", cases["submit"], n)]
            lats: dict[str, list[float]] = {name: [] for name in cases}
            walls = dict.fromkeys(cases, 0.0)
            for name, fn, count in turns:
                lat = asyncio.run(measure(server.url, fn, count, concurrency))
                walls[name] += lat.pop()
                lats[name] += lat
            for name, lat in lats.items():
                results[name] = {"p50_ms": round(1000 * pct(lat, 50), 2), "p99_ms": round(1000 * pct(lat, 99), 2),
                                 "per_second": round(len(lat) / walls[name], 1)}
            noop = results["no-op (/healthz)"]
            for r in results.values():
                r["p50_ratio"] = round(r["p50_ms"] / noop["p50_ms"], 2)
                r["p99_ratio"] = round(r["p99_ms"] / noop["p99_ms"], 2)
            csv = "prompt,seed\n" + "".join(f"prompt number {i},{i}\n" for i in range(1000))
            t0 = time.perf_counter()
            r = http.post("/v1/batches", files={"file": ("bench.csv", csv.encode(), "text/csv")})
            csv_seconds = time.perf_counter() - t0
            assert r.status_code == 200, r.text
        finally:
            server.stop()
    finally:
        if pg:
            pg.stop()
            shutil.rmtree(pg.root, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
    return {"db": db, "rows": rows, "requests_per_case": n, "concurrency": concurrency, "rounds": rounds,
            "seed_seconds": round(seed_seconds, 1), "csv_1000_rows_seconds": round(csv_seconds, 3), "cases": results}


def table(res: dict) -> str:
    lines = [f"{res['db']}, {res['rows']:,} videos, {res['requests_per_case']} requests per case at concurrency "
             f"{res['concurrency']}, reads in {res.get('rounds', 1)} interleaved rounds; 1,000-row CSV accepted in "
             f"{res['csv_1000_rows_seconds']} s", "",
             "| request | p50 ms | p99 ms | p50 / no-op | p99 / no-op | req/s |", "|---|---|---|---|---|---|"]
    for name, r in res["cases"].items():
        lines.append(f"| {name} | {r['p50_ms']} | {r['p99_ms']} | {r['p50_ratio']} | {r['p99_ratio']} | "
                     f"{r['per_second']} |")
    return "\n".join(lines)


def write_docs(results: list[dict], command: str) -> None:
    write_section("api", "API and database (`scripts/bench/api.py`)", command,
                  "\n\n".join(table(r) for r in results))

def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--rounds", type=int, default=8, help="turns the read cases take, each with requests/rounds")
    p.add_argument("--json", type=Path)
    p.add_argument("--write-docs", action="store_true")
    args = p.parse_args()
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    results = [run(db, args.rows, args.requests, args.concurrency, args.rounds) for db in dbs]
    for r in results:
        print(table(r), end="\n\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.write_docs:
        write_docs(results, "python scripts/bench/api.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
