"""``python -m faceid export --out FILE.csv [filters] [--unmasked --as USER]``.

The same governed export as the dashboard's download button (``faceid.reports.export``): masked by
default, audited, formula-safe. Without ``--as`` the export is recorded under
``cli:<os user>`` with the auditor role, which may only export masked data. ``--unmasked``
needs ``--as`` naming an enabled user whose role allows it (demo mode also accepts the demo
users).
"""

from __future__ import annotations

import argparse
import getpass
from datetime import date

from sqlalchemy import Engine
from sqlmodel import Session, select

from faceid.access.actors import DEMO_ACTORS, Actor
from faceid.core.config import Settings, load_settings
from faceid.reports.export import (
    DATE_FIELDS,
    DECISION_STATES,
    LIVENESS_VALUES,
    ExportError,
    ExportFilter,
    export_csv,
)
from faceid.store.db import make_engine
from faceid.store.tables import User


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="CSV file to write (UTF-8 with BOM)")
    p.add_argument("--from", dest="date_from", type=_date, metavar="DATE",
                   help="first UTC day to include (YYYY-MM-DD)")
    p.add_argument("--to", dest="date_to", type=_date, metavar="DATE",
                   help="last UTC day to include (YYYY-MM-DD, inclusive)")
    p.add_argument("--date-field", choices=DATE_FIELDS, default="case",
                   help="which time --from/--to apply to (default: case = the verify time, "
                   "else when the desk stored the result)")
    p.add_argument("--status", help="FaceID status, e.g. OK, FAILED, WEBRTC_UNSUPPORTED")
    p.add_argument("--liveness", choices=LIVENESS_VALUES)
    p.add_argument("--decision", choices=DECISION_STATES, help="review state of the case")
    p.add_argument("--reviewer", help="username of whoever made the latest decision")
    p.add_argument("--unmasked", action="store_true",
                   help="names and ID numbers in clear (admin only; audited)")
    p.add_argument("--as", dest="as_user", metavar="USER",
                   help="the desk user making the export (recorded in the audit trail)")


def resolve_actor(engine: Engine, settings: Settings, username: str | None) -> Actor:
    """The desk user named ``username``, or the masked-only command-line identity."""
    if not username:
        return Actor(f"cli:{getpass.getuser()}", "command line", "auditor")
    with Session(engine) as s:
        user = s.exec(select(User).where(User.username == username)).first()
    if user is not None:
        if user.disabled:
            raise ExportError(f"User {username!r} is disabled.")
        return Actor(user.username, user.display_name or user.username, user.role)
    if settings.demo:
        for actor in DEMO_ACTORS:
            if actor.username == username:
                return actor
    raise ExportError(f"No desk user is called {username!r}.")


def run(args: argparse.Namespace) -> int:
    if args.unmasked and not args.as_user:
        raise ExportError("--unmasked needs --as USER (the export is recorded under that user).")
    settings = load_settings()
    engine = make_engine(settings.database_url)
    try:
        actor = resolve_actor(engine, settings, args.as_user)
        filters = ExportFilter(date_from=args.date_from, date_to=args.date_to,
                               date_field=args.date_field, status=args.status,
                               liveness=args.liveness, decision_state=args.decision,
                               reviewer=args.reviewer)
        report = export_csv(engine, args.out, filters, actor, unmasked=args.unmasked)
    finally:
        engine.dispose()
    kind = "UNMASKED" if report.unmasked else "masked"
    print(f"wrote {report.rows} rows ({kind}) to {report.path}; "
          f"audit event {report.audit_event_id}")
    if report.rendered and not report.unmasked:
        # Correct either way; only slower. Said so that a bulk load's missing step is seen.
        print(f"note: {report.rendered} row(s) had no cached export line and were rendered "
              "now; `python -m faceid db refresh-export` renders them once for all")
    return 0
