"""The line of waiting videos: positions are right, and counting them stays on the partial index.

Queue positions appear on every status call and list page, so their cost must not grow with a
video's place in line through table reads (docs/performance.md, API benchmark).
"""

from __future__ import annotations

import random
import time

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import Session, SQLModel, select

from core import queries
from core.db import engine_for, migrate
from core.models import Video


def test_migrations_build_exactly_the_models_schema(db_url: str) -> None:
    """A model change without its migration (or the reverse) shows up here, on both databases."""
    migrate(db_url)
    with engine_for(db_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


def _add_videos(session: Session, n: int) -> list[Video]:
    rnd = random.Random(7)
    videos = []
    for i in range(n):
        status = rnd.choice(["queued"] * 6 + ["in_progress", "completed", "failed"])
        videos.append(Video(
            id=f"video_w{i}", status=status, model="tiny", prompt="p", num_frames=31, width=432, height=240,
            fps=30, seed=i, num_inference_steps=8, guidance_scale=4.5, created_at=time.time(), updated_at=time.time(),
            priority=rnd.choice(["interactive", "batch"]),
            # Some queued videos are already given to a Job (cluster mode): they are out of the line.
            job_name=f"job-{i}" if status != "queued" or rnd.random() < 0.2 else None))
    session.add_all(videos)
    session.commit()
    return videos


def test_positions_match_the_dispatch_order(db_url: str) -> None:
    """Interactive before batch, then oldest first, dispatched videos out of the line: the order the
    runner and controller take videos in (their `ORDER BY priority != 'interactive', seq`)."""
    migrate(db_url)
    with Session(engine_for(db_url)) as s:
        _add_videos(s, 300)
        line = s.exec(sa.select(Video.id).where(Video.status == "queued", Video.job_name.is_(None))
                      .order_by(Video.priority != "interactive", Video.seq)).scalars().all()
        expected = {vid: i + 1 for i, vid in enumerate(line)}
        every = list(s.exec(select(Video)))
        for page in (every[:20], every[140:160], every[-20:], [v for v in every if v.priority == "batch"][-5:]):
            want = {v.id: expected[v.id] for v in page if v.id in expected}
            got = queries.queue_positions(s, page)
            # (a dispatched video's place is Kueue's, filled in by the controller's watcher)
            assert {vid: got.get(vid) for vid in want} == want
        assert len(line) > 100 and {v.priority for v in every} == {"interactive", "batch"}


def _plans(conn: sa.Connection, statements: list[tuple[str, object]]) -> list[str]:
    out = []
    for sql, params in statements:
        if conn.dialect.name == "sqlite":
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params).all()
            out.append(" ".join(str(r[-1]) for r in rows))
        else:
            conn.exec_driver_sql("SET enable_seqscan = off")
            rows = conn.exec_driver_sql(f"EXPLAIN {sql}", params).all()
            out.append(" ".join(r[0] for r in rows))
    return out


def test_counting_the_line_reads_only_the_waiting_index(db_url: str) -> None:
    """The counts are index-only scans of `ix_video_waiting`: this fails if the waiting predicate is
    ever sent as bound parameters (the planners then cannot prove the partial index applies)."""
    migrate(db_url)
    engine = engine_for(db_url)
    with Session(engine) as s:
        videos = _add_videos(s, 60)
        statements: list[tuple[str, object]] = []

        def record(_conn, _cursor, statement, parameters, _context, _many) -> None:  # noqa: ANN001
            if "count(" in statement.lower():
                statements.append((statement, parameters))

        sa.event.listen(engine, "before_cursor_execute", record)
        try:
            queued = [v for v in videos if v.status == "queued" and v.job_name is None]
            queries.queue_positions(s, queued[-10:])
        finally:
            sa.event.remove(engine, "before_cursor_execute", record)
    assert len(statements) == 2  # one per priority, for any number of videos
    with engine.connect() as conn:
        plans = _plans(conn, statements)
    for plan in plans:
        # Every range of the statement is its own scan, and each must read only the index. SQLite reads
        # the seq (its rowid) from the index and never seeks the table (a deferred seek); PostgreSQL
        # says so in the plan.
        if engine.dialect.name == "sqlite":
            assert "SCAN video" not in plan and plan.count("SEARCH video USING INDEX ix_video_waiting") == \
                plan.count("SEARCH") > 1, plan
        else:
            assert plan.count("Index Only Scan using ix_video_waiting") == plan.count("Scan") > 1, plan


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_no_waiting_videos_needs_no_query(db_url: str) -> None:
    migrate(db_url)
    with Session(engine_for(db_url)) as s:
        done = [v for v in _add_videos(s, 30) if v.status != "queued"]
        assert queries.queue_positions(s, done) == {}
