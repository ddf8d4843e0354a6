"""``python -m faceid audit verify``: check the audit trail's hash chain end to end.

Exit status 0 if intact, 1 if broken (the message names the first broken entry id), so a
cron job or CI step can alert on it. Read-only on purpose: an auditor may run it with
database credentials that cannot write.
"""

from __future__ import annotations

import argparse

from sqlmodel import Session

from faceid.cli.commands import open_engine
from faceid.store import audit


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["verify"], help="verify: recompute every link")


def run(args: argparse.Namespace) -> int:
    engine = open_engine()
    try:
        with Session(engine) as s:
            report = audit.verify_chain(s)
    finally:
        engine.dispose()
    print(report.describe())
    return 0 if report.ok else 1
