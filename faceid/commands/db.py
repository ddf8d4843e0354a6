"""``python -m faceid db upgrade|current``."""

from __future__ import annotations

import argparse

from alembic import command
from alembic.runtime.migration import MigrationContext

from faceid import schema
from faceid.config import load_settings
from faceid.db import make_engine


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["upgrade", "current"],
                   help="upgrade: migrate to the latest schema; current: print the revision")


def run(args: argparse.Namespace) -> int:
    engine = make_engine(load_settings().database_url)
    if args.action == "upgrade":
        command.upgrade(schema.alembic_config(engine), "head")
        print("database schema is up to date")
    with engine.connect() as conn:
        print("revision:", MigrationContext.configure(conn).get_current_revision())
    return 0
