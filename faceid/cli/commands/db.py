"""``python -m faceid db upgrade|current|refresh-export``."""

from __future__ import annotations

import argparse

from alembic import command
from alembic.runtime.migration import MigrationContext

from faceid.core.config import load_settings
from faceid.store import export_lines, schema
from faceid.store.db import make_engine


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["upgrade", "current", "refresh-export"],
                   help="upgrade: migrate to the latest schema, then render missing export "
                        "lines; current: print the revision; refresh-export: only render "
                        "the missing or outdated export lines")


def run(args: argparse.Namespace) -> int:
    engine = make_engine(load_settings().database_url)
    if args.action == "upgrade":
        command.upgrade(schema.alembic_config(engine), "head")
        print("database schema is up to date")
    if args.action in ("upgrade", "refresh-export"):
        # After an upgrade the new code's lines replace the old ones (another renderer).
        print(f"export lines rendered: {export_lines.fill_lines(engine)}")
    with engine.connect() as conn:
        print("revision:", MigrationContext.configure(conn).get_current_revision())
    return 0
