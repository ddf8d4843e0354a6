"""Create or migrate the schema. Alembic owns the real schema from the first revision;
``create_all`` builds the same thing directly for fast in-memory tests (a test checks that the
migrations and the models agree)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine
from sqlmodel import SQLModel

from faceid.store import tables, triggers

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    command.downgrade(alembic_config(engine), revision)


def create_all(engine: Engine) -> None:
    assert tables.Verification  # the import registers every table on the metadata
    SQLModel.metadata.create_all(engine)
    with engine.begin() as conn:
        triggers.install(conn)
