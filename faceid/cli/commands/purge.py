"""``python -m faceid purge [--dry-run]``: apply the retention policy (faceid.reports.retention).

The policy comes from ``FACEID_RETAIN_IMAGES_DAYS`` / ``FACEID_RETAIN_PII_DAYS`` or
secrets.toml ``[retention]``; with neither set everything is kept and nothing is purged.
"""

from __future__ import annotations

import argparse

from faceid.accounts.users import cli_actor
from faceid.cli.commands import open_engine
from faceid.reports.retention import RetentionPolicy, purge


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true",
                   help="count what would be purged; change nothing")


def run(args: argparse.Namespace) -> int:
    policy = RetentionPolicy.from_env()  # read first: a bad policy fails before touching the DB
    engine = open_engine()
    try:
        report = purge(engine, policy, cli_actor(), dry_run=args.dry_run)
    finally:
        engine.dispose()
    print(report.describe())
    return 0
