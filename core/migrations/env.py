"""Alembic environment: runs migrations on the engine the app passes in."""

from alembic import context

import core.models

# Every webapp replica migrates at start; on PostgreSQL they take turns on this advisory lock, so the
# second finds the schema current instead of racing the first's CREATE TABLEs. Any fixed number works:
# these are the bytes of "t2vm".
MIGRATION_LOCK = 0x7432766D

config = context.config
target_metadata = core.models.SQLModel.metadata  # importing the models registered their tables

engine = config.attributes.get("engine")
if engine is None:
    from sqlalchemy import create_engine

    engine = create_engine(config.get_main_option("sqlalchemy.url"))

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Held until this transaction ends; alembic reads the current revision after it.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        context.run_migrations()
    connection.commit()
