"""``python -m faceid VERB ...``: the command-line face of the desk."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from sqlalchemy.exc import SQLAlchemyError

from faceid.api import redact
from faceid.core.errors import FaceIDError

# verb -> (module under faceid.cli.commands, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "simulate": ("simulate", "serve the built-in FaceID simulator over HTTP"),
    "db": ("db", "database schema: upgrade, current"),
    "fetch": ("fetch", "fetch results from FaceID into the store (each read spent once)"),
    "import": ("importer", "import saved get_result JSON files or folders"),
    "notify-server": ("notify", "receive FaceID notify_url callbacks"),
    "worker": ("worker", "run the durable fetch queue (any number, on any machine)"),
    "queue": ("queue_cmd", "show the fetch queue: jobs, leases, stale holders, slots"),
    "demo-seed": ("demo", "fill an empty database with simulated demo cases"),
    "export": ("export", "export verifications as CSV (masked; --unmasked --as an admin)"),
    "user": ("user", "manage local users and OIDC identities"),
    "audit": ("audit_cmd", "verify the audit trail's hash chain"),
    "purge": ("purge", "purge images and personal data past the retention policy"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m faceid",
                                     description="FaceID Review Desk command line.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, (module, help_text) in VERBS.items():
        mod = importlib.import_module(f"faceid.cli.commands.{module}")
        p = sub.add_parser(verb, help=help_text, description=help_text)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redact.install()
    try:
        return int(args._run(args) or 0)
    except FaceIDError as exc:
        # Our errors carry plain, secret-free text: print it, not a traceback.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        # The database is away or refused us; its text can carry SQL and server detail.
        print(f"error: database error ({type(exc).__name__}); check DATABASE_URL and that "
              "the database is reachable, then run the command again.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
