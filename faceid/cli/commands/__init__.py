"""CLI verbs of ``python -m faceid``. Each module has ``add_arguments(parser)`` and
``run(args) -> int`` (the exit status); the logic lives in the service modules."""

from __future__ import annotations

from sqlalchemy import Engine

from faceid.core.config import Settings, load_settings
from faceid.store import schema
from faceid.store.db import make_engine


def open_engine(settings: Settings | None = None) -> Engine:
    """The configured database, migrated to the latest schema (every verb that works on data)."""
    engine = make_engine((settings or load_settings()).database_url)
    schema.upgrade(engine)
    return engine
