"""Alembic environment: runs migrations on the engine the app passes in."""

from alembic import context

import webapp.models

config = context.config
target_metadata = webapp.models.SQLModel.metadata  # importing the models registered their tables

engine = config.attributes.get("engine")
if engine is None:
    from sqlalchemy import create_engine

    engine = create_engine(config.get_main_option("sqlalchemy.url"))

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
