"""The invariants every fault run must keep, checked from the DB, object storage and job logs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from jobcontract.records import video_keys
from jobcontract.storage import ObjectStore
from core.status import VideoStatus

TERMINAL = {s.value for s in VideoStatus if s.is_terminal()}


@dataclass
class Report:
    """What the check found; `violations` must be empty."""

    videos: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)


def check(*, db_url: str, store: ObjectStore, accepted: set[str], job_logs: Path | None) -> Report:
    """Every accepted video is terminal exactly once; completed ones have their file; no orphans; no overlap."""
    report = Report()
    engine = sa.create_engine(db_url)
    with engine.connect() as c:
        rows = {r.id: r for r in c.execute(sa.text("SELECT id, status, bytes, sha256 FROM video"))}
        events: dict[str, list[tuple[str | None, str]]] = {}
        for e in c.execute(sa.text("SELECT video_id, from_status, to_status FROM video_event ORDER BY seq")):
            events.setdefault(e.video_id, []).append((e.from_status, e.to_status))
    engine.dispose()
    report.videos = len(rows)
    for row in rows.values():
        report.statuses[row.status] = report.statuses.get(row.status, 0) + 1
    for vid in sorted(accepted - set(rows)):
        report.violations.append(f"{vid}: accepted by the API but missing from the DB (lost)")
    for vid, row in rows.items():
        if row.status not in TERMINAL:
            report.violations.append(f"{vid}: still {row.status} after the run settled")
        ends = [t for _, t in events.get(vid, []) if t in TERMINAL]
        if len(ends) != 1 and row.status in TERMINAL:
            report.violations.append(f"{vid}: {len(ends)} terminal events {ends}")
        keys = video_keys(vid)
        has_video = store.exists(keys["video"])
        if row.status == "completed":
            if not has_video:
                report.violations.append(f"{vid}: completed but its MP4 is missing")
            elif store.size(keys["video"]) != row.bytes:
                report.violations.append(f"{vid}: MP4 size differs from the DB's bytes")
        elif row.status == "cancelled" and has_video:
            report.violations.append(f"{vid}: cancelled but its MP4 is still stored (orphan)")
    for key in store.list("videos/"):
        vid = key.split("/")[1]
        if vid not in rows:
            report.violations.append(f"{key}: stored for a video the DB does not know (orphan)")
    if job_logs is not None:
        report.violations += overlapping_runs(job_logs)
    return report


def overlapping_runs(logs: Path) -> list[str]:
    """Two job processes working on the same video at the same time, from their logs."""
    spans: dict[str, list[tuple[float, float, str]]] = {}
    for log in sorted(logs.glob("*.log")):
        started: dict[str, float] = {}
        last = 0.0
        for line in log.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            ts = _ts(rec.get("ts"))
            last = max(last, ts)
            vid = rec.get("video_id")
            if rec.get("msg") == "item started" and vid:
                started[vid] = ts
            elif rec.get("msg") in ("item done", "item failed") and vid in started:
                spans.setdefault(vid, []).append((started.pop(vid), ts, log.name))
        for vid, t0 in started.items():  # killed mid-item: it ran until its last log line
            spans.setdefault(vid, []).append((t0, last, log.name))
    out = []
    for vid, runs in spans.items():
        runs.sort()
        for (a0, a1, la), (b0, b1, lb) in zip(runs, runs[1:]):
            if b0 < a1 and la != lb:
                out.append(f"{vid}: ran in {la} and {lb} at the same time")
    return out


def _ts(value: str | None) -> float:
    from datetime import datetime

    if not value:
        return 0.0
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
