"""Settings validation and migrations on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from core.db import engine_for, migrate
from core.settings import Settings
from core.status import VideoStatus, can_move


def test_defaults_are_the_embedded_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert s.db_url == f"sqlite:///{tmp_path / 't2v-data' / 't2v.db'}"
    assert s.objects_url == f"file://{tmp_path / 't2v-data' / 'objects'}"
    assert s.models_path == tmp_path / "t2v-data" / "models"
    assert (s.backend.value, s.model) == ("local", "tiny")


def test_models_are_a_comma_separated_list_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """As manifests/base's t2v-settings ConfigMap sets them (JSON was required before, and `tiny` failed)."""
    monkeypatch.setenv("T2V_MODELS", "tiny, mochi-1-preview")
    assert Settings().models == ["tiny", "mochi-1-preview"]
    monkeypatch.setenv("T2V_MODELS", "tiny")
    assert Settings().models == ["tiny"]


def test_postgres_urls_use_psycopg3() -> None:
    assert Settings(database_url="postgresql://u@h/db").db_url == "postgresql+psycopg://u@h/db"
    assert Settings(database_url="postgres://u@h/db").db_url == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(("env", "value", "fragment"), [
    ("T2V_BACKEND", "nomad", "backend"),
    ("T2V_DATABASE_URL", "mysql://x", "T2V_DATABASE_URL='mysql://x'"),
    ("T2V_STORAGE_URL", "gs://b", "T2V_STORAGE_URL='gs://b'"),
    ("T2V_ITEMS_PER_JOB", "0", "items_per_job"),
    ("T2V_HTMX_SOURCE", "unpkg", "T2V_HTMX_SOURCE='unpkg'"),
])
def test_bad_values_are_named(env: str, value: str, fragment: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ValidationError, match=fragment):
        Settings()


def test_migrations_create_the_schema_idempotently(db_url: str) -> None:
    migrate(db_url)
    migrate(db_url)  # a second start finds it current
    tables = set(sa.inspect(engine_for(db_url)).get_table_names())
    assert {"video", "video_event", "batch", "idempotency_key", "alembic_version"} <= tables
    indexes = {i["name"] for i in sa.inspect(engine_for(db_url)).get_indexes("video")}
    assert {"ix_video_status_seq", "ix_video_batch_seq", "ix_video_tenant_seq"} <= indexes


@pytest.mark.parametrize(("src", "dst", "ok"), [
    ("queued", "in_progress", True), ("in_progress", "completed", True), ("in_progress", "queued", True),
    ("completed", "in_progress", False), ("failed", "queued", False), ("cancelled", "completed", False),
    ("queued", "completed", False),
])
def test_status_never_moves_backwards(src: str, dst: str, ok: bool) -> None:
    assert can_move(VideoStatus(src), VideoStatus(dst)) is ok
    assert VideoStatus(src).is_terminal() == (src in ("completed", "failed", "cancelled"))


def test_a_failed_statement_never_carries_its_parameters(tmp_path) -> None:
    """Prompts are user data: an exception (and so a log line) shows the SQL, never the values."""
    import sqlalchemy as sa

    from core.db import engine_for

    engine = engine_for(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.begin() as c:
        c.execute(sa.text("CREATE TABLE t (prompt TEXT NOT NULL UNIQUE)"))
        c.execute(sa.text("INSERT INTO t VALUES (:p)"), {"p": "my secret storyboard"})
    try:
        with engine.begin() as c:
            c.execute(sa.text("INSERT INTO t VALUES (:p)"), {"p": "my secret storyboard"})
    except sa.exc.IntegrityError as e:
        assert "my secret storyboard" not in str(e)
        assert "INSERT INTO t" in str(e)
    else:
        raise AssertionError("the duplicate insert should have failed")


@pytest.mark.postgres
def test_replicas_starting_together_migrate_one_after_another(postgres_url: str) -> None:
    """Every webapp replica runs the migrations at start (manifests/base/webapp.yaml: 2 replicas);
    started at the same instant on an empty database, each must come up, the schema made once."""
    import subprocess
    import sys
    import time

    start_at = time.time() + 8  # every process imports first, then all migrate at this instant
    code = ("import sys, time; from core.db import migrate; "
            f"time.sleep(max(0, {start_at} - time.time())); migrate(sys.argv[1])")
    procs = [subprocess.Popen([sys.executable, "-c", code, postgres_url], stderr=subprocess.PIPE, text=True)
             for _ in range(8)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, "\n".join(e[-600:] for e in errors)
    with engine_for(postgres_url).connect() as c:
        assert len(c.exec_driver_sql("SELECT version_num FROM alembic_version").all()) == 1
