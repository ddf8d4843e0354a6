"""Alembic environment: the engine is injected by faceid.store.schema (no URL in a config file)."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from faceid.store import tables  # noqa: F401 - registers the tables on the metadata

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # pragma: no cover - only when someone runs the alembic CLI by hand
    from faceid.core.config import load_settings
    from faceid.store.db import make_engine

    engine = make_engine(load_settings().database_url)

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
