"""CSV export of verifications: one governed function, one documented column list.

Like datasette's CSV export, there is exactly one way out of the desk for bulk data, so the
rules live in one place:

- **Columns** are fixed and documented in ``faceid.store.export_lines.EXPORT_COLUMNS`` (the
  README reproduces it); the decision columns come from the case's *latest* ``Decision`` row
  (decisions are append-only).
- **Who may export** is ``faceid.access.permissions.GRANTS``: ``export`` for any export,
  ``export_unmasked`` (admin only) for names and ID numbers in clear.
- **Masked by default.** Names and ID numbers go through ``faceid.access.pii``. Bulk personal
  data is a bigger release than the audited one-case reveal, so an unmasked export also needs
  ``pii.can_reveal`` (auditors check the process, not identities, and may not reveal at all).
  A refused attempt is recorded.
- **Audited.** Every export appends an ``export`` event (filters, row count, masked or not, never
  any personal data). An unmasked export also appends ``export_unmasked_start`` and commits it
  *before* the first row is read, so personal data can never leave without a trace even if the
  process dies half way.
- **Spreadsheet-safe cells and bytes** (``faceid.core.csvsafe``): no cell starts a formula, UTF-8
  with a BOM, the csv module's quoting (biz_ids contain commas), ``\\r\\n``.
- **Lines rendered once.** A masked export concatenates each case's line, rendered when the
  case was last written (``faceid.store.export_lines``); unmasked exports render every row.
- **Streams.** Rows are read in keyset pages (``id > last ORDER BY id LIMIT n``), each page in
  its own short transaction: on SQLite every transaction is ``BEGIN IMMEDIATE`` (the writer
  lock), so one long read would stall every reviewer's decision for the whole export. Memory
  stays at one page whatever the table size; no DataFrame is built.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import IO, Any, Literal

from sqlalchemy import Engine, Select, and_, func, select
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session

from faceid.access import pii
from faceid.access.actors import Actor
from faceid.access.permissions import Permission, allowed
from faceid.core.csvsafe import BOM, Records
from faceid.core.errors import ExportError, ExportRefused, PermissionDenied  # noqa: F401
from faceid.core.timeutil import within_days
from faceid.review.decisions import STATES
from faceid.store import audit
from faceid.store.export_lines import (
    COLUMN_NAMES,
    _cells,
    _latest_decision,
    _row_query,
    _with_current_line,
    render_lines,
)
from faceid.store.tables import ExportLine, Verification, case_time

DECISION_STATES: tuple[str, ...] = tuple(STATES)  # faceid.review.decisions: the one list of states
LIVENESS_VALUES = ("PASS", "FAIL")
#: What --from/--to apply to. "case": FaceID's verify time, else when the desk stored the result
#: (``tables.case_time``, as the audit pages date cases): a flow that failed before any face
#: compare has no verify time and would otherwise drop out of every dated export.
DATE_FIELDS = ("case", "verified_at", "stored_at")
PAGE_SIZE = 5000  # rows per keyset page: ~5 MB of strings, ~40 ms of writer lock on SQLite


@dataclass(frozen=True, slots=True)
class ExportFilter:
    """Which verifications to export. Every field is optional; dates are whole UTC days."""

    date_from: date | None = None
    date_to: date | None = None  # inclusive
    date_field: Literal["case", "verified_at", "stored_at"] = "case"
    status: str | None = None
    liveness: str | None = None  # PASS | FAIL
    decision_state: str | None = None
    #: Username of whoever made the latest decision.
    reviewer: str | None = None

    def validate(self) -> ExportFilter:
        if self.date_field not in DATE_FIELDS:
            raise ExportError(f"date_field must be one of {', '.join(DATE_FIELDS)}.")
        if self.liveness is not None and self.liveness not in LIVENESS_VALUES:
            raise ExportError("liveness must be PASS or FAIL.")
        if self.decision_state is not None and self.decision_state not in DECISION_STATES:
            raise ExportError(f"decision state must be one of {', '.join(DECISION_STATES)}.")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ExportError("The 'from' date is after the 'to' date.")
        return self

    def describe(self) -> dict[str, str]:
        """The filters that are set, as plain strings (what the audit event records)."""
        out: dict[str, str] = {}
        for key, value in asdict(self).items():
            if value is None or (key == "date_field" and not (self.date_from or self.date_to)):
                continue
            out[key] = value.isoformat() if isinstance(value, date) else str(value)
        return out


@dataclass(frozen=True, slots=True)
class ExportReport:
    rows: int
    unmasked: bool
    filters: dict[str, str]
    columns: tuple[str, ...] = COLUMN_NAMES
    audit_event_id: int | None = None
    path: str | None = None
    #: Rows whose line was rendered during the export (not cached; every row when unmasked).
    rendered: int = 0


def may_export_unmasked(actor: Actor) -> bool:
    # Both conditions: a role granted export_unmasked by mistake still cannot export what it
    # may not even reveal on one case.
    return allowed(actor.role, Permission.EXPORT_UNMASKED) and pii.can_reveal(actor.role)


# --------------------------------------------------------------------------- query


def _conditions(f: ExportFilter, latest: Any) -> list[ColumnElement[bool]]:
    v = Verification.__table__.c
    when = {"case": case_time(), "verified_at": v.verified_at,
            "stored_at": v.stored_at}[f.date_field]
    conds = within_days(when, f.date_from, f.date_to)
    if f.status:
        conds.append(v.status == f.status)
    if f.liveness:
        conds.append(v.liveness_result == f.liveness)
    if f.decision_state:
        conds.append(v.decision_state == f.decision_state)
    if f.reviewer:
        conds.append(latest.c.actor == f.reviewer)
    return conds


def _filtered_from(columns: Sequence[Any], joined: Any, f: ExportFilter) -> Select[Any]:
    """``select(columns)`` from ``joined`` (verifications, perhaps with more joined to it) with
    the filters; the latest decision is joined only for a reviewer filter, the one filter on
    it (the correlated lookup costs a probe per row)."""
    latest = None
    if f.reviewer:
        latest, on = _latest_decision(Verification.__table__)
        joined = joined.outerjoin(latest, on)
    return _filtered(select(*columns).select_from(joined), f, latest)


def _filtered(stmt: Select[Any], f: ExportFilter, latest: Any) -> Select[Any]:
    conds = _conditions(f, latest)
    return stmt.where(and_(*conds)) if conds else stmt


def _pages(engine: Engine, f: ExportFilter, page_size: int) -> Iterator[Sequence[Any]]:
    stmt, latest = _row_query(engine.dialect.name)
    stmt = _filtered(stmt, f, latest)
    idcol = Verification.__table__.c.id
    last = 0
    while True:
        with engine.connect() as conn:  # one short transaction per page (see module docstring)
            rows = conn.execute(stmt.where(idcol > last).order_by(idcol).limit(page_size)).all()
        if not rows:
            return
        yield rows
        if len(rows) < page_size:
            return
        last = rows[-1][0]


def iter_rows(engine: Engine, filters: ExportFilter, *, unmasked: bool = False,
              page_size: int = PAGE_SIZE) -> Iterator[list[str]]:
    """The exported cells, row by row (already masked and neutralised). No permission check:
    callers outside this module go through ``export_csv``."""
    for page in _pages(engine, filters, page_size):
        for r in page:
            yield _cells(r, unmasked)


def _write_lines(out: IO[bytes], engine: Engine, filters: ExportFilter,
                 page_size: int) -> tuple[int, int]:
    """The masked export from cached lines; returns (rows, lines rendered on the fly)."""
    v, el = Verification.__table__, ExportLine.__table__
    stmt = _filtered_from((v.c.id, el.c.line), _with_current_line(), filters)
    rows = rendered = 0
    last = 0
    while True:
        with engine.connect() as conn:  # one short transaction per page (see module docstring)
            page = conn.execute(stmt.where(v.c.id > last).order_by(v.c.id)
                                .limit(page_size)).all()
            missing = [i for i, line in page if line is None]
            fresh = render_lines(conn, missing)
        if not page:
            return rows, rendered
        # A case gone between the two reads (never deleted today) is left out, not guessed.
        lines = [line if line is not None else fresh.get(i, "") for i, line in page]
        out.write("".join(lines).encode("utf-8"))
        rows += len(page) - (len(missing) - len(fresh))
        rendered += len(fresh)
        if len(page) < page_size:
            return rows, rendered
        last = page[-1][0]


def _refused(engine: Engine, actor: Actor, described: dict[str, str], unmasked: bool) -> None:
    """A refused export is evidence too (someone tried): record it, without personal data."""
    with Session(engine) as s:
        audit.record(s, actor.username, "export_refused", None,
                     {"format": "csv", "filters": described, "unmasked": unmasked,
                      "role": actor.role})
        s.commit()


def export_csv(engine: Engine, out: IO[bytes] | str | os.PathLike[str],
               filters: ExportFilter | None, actor: Actor, *, unmasked: bool = False,
               page_size: int = PAGE_SIZE) -> ExportReport:
    """Write the CSV to ``out`` (a binary stream, or a path written atomically) and audit it."""
    filters = (filters or ExportFilter()).validate()
    described = filters.describe()
    if not allowed(actor.role, Permission.EXPORT):
        _refused(engine, actor, described, unmasked)
        raise ExportRefused(f"Your role ({actor.role}) may not export case data.",
                            permission=Permission.EXPORT.value, role=actor.role)
    if unmasked and not may_export_unmasked(actor):
        _refused(engine, actor, described, unmasked)
        raise ExportRefused(f"Your role ({actor.role}) may not export names and ID numbers "
                            "unmasked; a masked export is allowed.",
                            permission=Permission.EXPORT_UNMASKED.value, role=actor.role)
    if unmasked:
        with Session(engine) as s:
            audit.record(s, actor.username, "export_unmasked_start", None,
                         {"format": "csv", "filters": described})
            s.commit()

    if isinstance(out, str | os.PathLike):
        path = Path(out)
        part = path.with_name(path.name + ".part")
        try:
            with part.open("wb") as fh:
                rows, rendered = _write(fh, engine, filters, unmasked, page_size)
            os.replace(part, path)
        finally:
            # A half-written file (perhaps with personal data) must not be left behind.
            part.unlink(missing_ok=True)
        shown: str | None = str(path)
    else:
        rows, rendered = _write(out, engine, filters, unmasked, page_size)
        shown = None

    with Session(engine) as s:
        event = audit.record(s, actor.username, "export", None,
                             {"format": "csv", "filters": described, "rows": rows,
                              "unmasked": unmasked, "columns": len(COLUMN_NAMES)})
        s.commit()
        event_id = event.id
    return ExportReport(rows, unmasked, described, COLUMN_NAMES, event_id, shown, rendered)


def _write(out: IO[bytes], engine: Engine, filters: ExportFilter, unmasked: bool,
           page_size: int) -> tuple[int, int]:
    """Header, then the rows: from cached lines when masked, rendered here when unmasked.
    Returns (rows, lines rendered on the fly)."""
    records = Records()
    out.write(BOM + records.line(COLUMN_NAMES).encode("utf-8"))
    if not unmasked:
        return _write_lines(out, engine, filters, page_size)
    rows = 0
    batch: list[list[str]] = []
    for row in iter_rows(engine, filters, unmasked=True, page_size=page_size):
        batch.append(row)
        if len(batch) >= 1000:
            # One encode per batch: a TextIOWrapper around ``out`` would run its encoder once
            # per row (measured: a fifth of the export's time).
            out.write(records.text(batch).encode("utf-8"))
            rows += len(batch)
            batch.clear()
    out.write(records.text(batch).encode("utf-8"))
    return rows + len(batch), rows + len(batch)


def count_rows(engine: Engine, filters: ExportFilter | None) -> int:
    """How many rows an export with these filters would write now (for the page to say so
    before anyone clicks). One COUNT; joins the latest decision only for a reviewer filter."""
    f = (filters or ExportFilter()).validate()
    stmt = _filtered_from((func.count(),), Verification.__table__, f)
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def export_bytes(engine: Engine, filters: ExportFilter | None, actor: Actor, *,
                 unmasked: bool = False) -> bytes:
    """The whole CSV in memory, for a download button (bounded by what one download holds)."""
    buf = io.BytesIO()
    export_csv(engine, buf, filters, actor, unmasked=unmasked)
    return buf.getvalue()
