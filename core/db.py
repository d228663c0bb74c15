"""Database engine, sessions and migrations (SQLite embedded, PostgreSQL in a cluster)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session, create_engine

from core.settings import get_settings

MIGRATIONS = Path(__file__).parent / "migrations"


@lru_cache
def engine_for(url: str) -> sa.Engine:
    """One engine per URL per process, its pool sized by the process's settings (`T2V_DB_POOL_*`)."""
    settings = get_settings()
    # Prompts are user data: a failed statement's parameters stay out of exception messages and so
    # out of logs (t2v never logs a prompt).
    options: dict = {"pool_size": settings.db_pool_size, "max_overflow": settings.db_max_overflow,
                     "pool_timeout": settings.db_pool_timeout_seconds, "hide_parameters": True}
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        else:
            options = {"hide_parameters": True}  # in-memory: one connection per thread, no pool to size
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **options)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(conn, _record):  # noqa: ANN001
            # WAL lets readers (the API) run beside the runner's writes; busy_timeout waits for locks.
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
            # pysqlite's own transaction handling must be off for BEGIN IMMEDIATE below.
            conn.isolation_level = None

        @sa.event.listens_for(engine, "begin")
        def _begin(conn):  # noqa: ANN001
            # Writers take the write lock at BEGIN, so a read-then-write transaction waits (busy_timeout)
            # instead of failing on a stale snapshot; readers begin deferred and never block anyone (WAL).
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("t2v_write") else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True, **options)


def migrate(url: str) -> None:
    """Bring the schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    cfg.attributes["engine"] = engine_for(url)
    command.upgrade(cfg, "head")


@lru_cache
def _bind(url: str, write: bool) -> sa.Engine:
    engine = engine_for(url)
    if write:
        return engine.execution_options(t2v_write=True)
    if engine.dialect.name == "postgresql":
        # A read runs each statement on its own: no BEGIN before it and no ROLLBACK when the session
        # closes, two round trips of the four a status call made. The statements of one list page (its
        # rows, then their queue positions) may then see two moments a millisecond apart.
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine


def session_for(url: str, *, write: bool = True) -> Session:
    """A new session; `expire_on_commit=False` so objects stay readable after commit.

    `write=False` is for read-only work: on SQLite it begins deferred and so never waits for writers;
    on PostgreSQL it runs without a transaction.
    """
    return Session(_bind(url, write), expire_on_commit=False)
