"""The export's columns and each case's masked line, rendered when the case is written.

The write paths (``faceid.store.write``, a decision, a purge) call ``keep_lines_fresh`` in the
transaction that changed a case, so the governed export (``faceid.reports.export``) concatenates
lines instead of rendering every row. The columns and the row query live here, below the export,
because rendering a case's line is part of writing the case; ``renderer`` fingerprints this
module with the cell rules and the masks it uses, so changing any of them retires every line.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import marshal
import sys
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    String,
    and_,
    delete,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy.sql.elements import ColumnElement

from faceid.access import pii
from faceid.core import csvsafe
from faceid.core.csvsafe import Records, neutralise_row
from faceid.store.tables import Decision, ExportLine, Verification

log = logging.getLogger(__name__)


#: The export's columns, in file order, with what each holds. README reproduces this table.
EXPORT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("biz_id", "FaceID business id (may contain a comma; the cell is quoted)"),
    ("biz_no", "The integrator's own id, echoed by FaceID"),
    ("status", "FaceID flow status (OK means the flow finished, not that the person passed)"),
    ("fail_reason", "Why a WEBRTC_UNSUPPORTED flow failed (NETWORK_ERROR, PERMISSIONS_ERROR, ...)"),
    ("procedure_type", "Liveness procedure (video, still, selfie, flash, meglive_flash)"),
    ("liveness_result", "PASS, FAIL, or empty when no liveness result was returned"),
    ("faceid_confidence", "result_faceid confidence (0-100), empty when not compared"),
    ("faceid_band", "Strictest threshold result_faceid reaches (1e-3..1e-6); 'none': below 1e-3"),
    ("verify_error", "verify_result error_message (NO_SUCH_ID_NUMBER, ...), empty if none"),
    ("genuineness_exceeded", "Fake-face signals over their threshold (comma list)"),
    ("risk_flags", "Risk flags derived when stored (comma list, see "
                   "faceid.store.summary.RISK_FLAGS)"),
    ("idcard_name", "Name on the ID card: MASKED (first character) unless an unmasked export"),
    ("idcard_number", "ID number: MASKED (first 3 and last 2 kept) unless an unmasked export"),
    ("decision_state", "Review state: pending, escalated, approved, rejected, reverify"),
    ("decision", "Latest decision's outcome: approve, reject, escalate, reverify; empty if none"),
    ("decision_reason", "Latest decision's reason code (see faceid.review.decisions.REASONS)"),
    ("reviewer", "Username of whoever made the latest decision"),
    ("decided_at", "When the latest decision was made (UTC, ISO 8601)"),
    ("verified_at", "When FaceID compared the face (verify_time; UTC, ISO 8601)"),
    ("stored_at", "When the desk stored the result (UTC, ISO 8601)"),
)
COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _ in EXPORT_COLUMNS)


# --------------------------------------------------------------------------- the row query


def _iso_sql(column: Any, dialect: str) -> ColumnElement[str]:
    """The UTC time as ``YYYY-MM-DDTHH:MM:SSZ`` (same as ``timeutil.iso``), formatted by the
    database: parsing 3 datetimes per row in Python was a third of the export's time."""
    if dialect == "postgresql":
        text = func.to_char(func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
    else:  # SQLite keeps UTC as "YYYY-MM-DD HH:MM:SS.ffffff"
        text = func.strftime("%Y-%m-%dT%H:%M:%SZ", column)
    return func.coalesce(text, literal(""), type_=String)


def _text(column: Any) -> ColumnElement[str]:
    # '' instead of NULL from the database saves a None test per cell in Python.
    return func.coalesce(column, literal(""), type_=String)


def _latest_decision(v: Any) -> tuple[Any, ColumnElement[bool]]:
    """The ``decisions`` alias holding each case's latest decision, and its join condition."""
    d = Decision.__table__.alias("latest")
    d2 = Decision.__table__.alias("d2")
    # Latest decision per case: a correlated max(id) answered from ix_decisions_verification_id,
    # one index probe per exported row (a GROUP BY over all decisions would be redone per page).
    latest_id = (select(func.max(d2.c.id)).where(d2.c.verification_id == v.c.id)
                 .correlate(v).scalar_subquery())
    return d, d.c.id == latest_id


@functools.cache
def _row_query(dialect: str) -> tuple[Select[Any], Any]:
    """Every exported cell of every case (id first), unfiltered; and the latest-decision alias.
    The one query behind every line, cached or not. Built once per dialect: constructing it
    costs ~2 ms, which every ingest and decision would otherwise pay (statements are
    immutable; ``.where`` returns a new one)."""
    v = Verification.__table__
    d, on = _latest_decision(v)
    c = v.c
    t = _text
    stmt = (
        select(c.id, t(c.biz_id), t(c.biz_no), t(c.status), t(c.fail_reason),
               t(c.procedure_type), t(c.liveness_result), c.faceid_confidence,
               t(c.faceid_band), t(c.verify_error), t(c.genuineness_exceeded), t(c.risk_flags),
               t(c.idcard_name), t(c.idcard_number), t(c.decision_state), t(d.c.outcome),
               t(d.c.reason), t(d.c.actor), _iso_sql(d.c.decided_at, dialect),
               _iso_sql(c.verified_at, dialect), _iso_sql(c.stored_at, dialect))
        .select_from(v.outerjoin(d, on))
    )
    return stmt, d


# --------------------------------------------------------------------------- cells and lines


# Positions in an exported row (after the leading id is dropped).
_CONFIDENCE = COLUMN_NAMES.index("faceid_confidence")
_NAME = COLUMN_NAMES.index("idcard_name")
_NUMBER = COLUMN_NAMES.index("idcard_number")


def _cells(r: Sequence[Any], unmasked: bool) -> list[str]:
    """One ``_row_query`` row as exported cells: masked, the number as text, neutralised."""
    row = list(r[1:])
    if not unmasked:
        row[_NAME] = pii.mask_name(row[_NAME])
        row[_NUMBER] = pii.mask_id_number(row[_NUMBER])
    conf = row[_CONFIDENCE]
    # A number cannot carry a formula and must stay a number (no prefix on "-1.5").
    row[_CONFIDENCE] = "" if conf is None else str(conf)
    return neutralise_row(row, number_at=_CONFIDENCE)


# --------------------------------------------------------------------------- the line cache
#
# Rendering a line costs ~10 µs of Python per case (fetch 20 cells, mask, neutralise, quote);
# at 100k cases that is most of an export. Each case's masked line is therefore rendered when
# the case is written (stored, decided, purged: ``refresh_lines`` in the same transaction) and
# an export concatenates lines. Correctness never depends on the cache: triggers delete a line
# whenever what it shows changes, a line from other code (``renderer``) is ignored, and a
# missing line is rendered on the fly by the same function. Unmasked exports never use it.


@functools.cache
def renderer() -> str:
    """Fingerprint of the code that renders lines: this module, the cell rules and the masks
    it uses. Any edit to one of them retires every cached line (``fill_lines`` renders them
    again)."""
    h = hashlib.sha256()
    for module in (sys.modules[__name__], csvsafe, pii):
        h.update(_code_of(module))
    return h.hexdigest()[:32]


def _code_of(module: Any) -> bytes:
    try:
        return inspect.getsource(module).encode("utf-8")
    except (OSError, TypeError):
        # Deployed without sources (.pyc only): the compiled code identifies the release.
        code = module.__loader__.get_code(module.__name__)
        return marshal.dumps(code)


def render_lines(conn: Connection, ids: Sequence[int]) -> dict[int, str]:
    """Masked export lines of these cases, by id, as of ``conn``'s transaction."""
    if not ids:
        return {}
    stmt, _ = _row_query(conn.dialect.name)
    records = Records()
    rows = conn.execute(stmt.where(Verification.__table__.c.id.in_(ids)))
    return {r[0]: records.line(_cells(r, False)) for r in rows}


def refresh_lines(conn: Connection, ids: Sequence[int]) -> int:
    """(Re)render and store these cases' lines. Call it in the transaction that changed them,
    after the change (the triggers have just deleted the old lines).

    The cases' rows are locked first (``FOR SHARE``; SQLite's ``BEGIN IMMEDIATE`` already
    serialises writers): a refresh running beside a decision on the same case (``db
    refresh-export`` while reviewers work) then waits for that transaction and renders what it
    committed. Without the lock PostgreSQL rendered the older state and either replaced the
    decision's fresh line with it or failed on the line's primary key."""
    v = Verification.__table__
    conn.execute(select(v.c.id).where(v.c.id.in_(list(ids))).order_by(v.c.id)
                 .with_for_update(read=True))
    lines = render_lines(conn, ids)
    el = ExportLine.__table__
    conn.execute(delete(el).where(el.c.verification_id.in_(list(ids))))
    if lines:
        tag = renderer()
        conn.execute(insert(el), [{"verification_id": i, "renderer": tag, "line": line}
                                  for i, line in lines.items()])
    return len(lines)


def keep_lines_fresh(conn: Connection, ids: Sequence[int]) -> None:
    """``refresh_lines`` for the write paths (store, decide, purge), in a savepoint: failing to
    render a line must never cost the write itself. The case then has no line, and the export
    renders it (or says why it cannot). Logged by type only: a database error's text can
    carry the row's values, names included."""
    try:
        with conn.begin_nested():
            refresh_lines(conn, ids)
    except Exception as exc:
        log.error("export line not rendered for %d case(s) (%s); the export will render it",
                  len(ids), type(exc).__name__)


def _with_current_line() -> Any:
    v, el = Verification.__table__, ExportLine.__table__
    return v.outerjoin(el, and_(el.c.verification_id == v.c.id, el.c.renderer == renderer()))


def fill_lines(engine: Engine, batch_size: int = 2000) -> int:
    """Render every missing or outdated line (after ``db upgrade``, a bulk load, a code
    change). One transaction per batch; returns how many lines were rendered."""
    v, el = Verification.__table__, ExportLine.__table__
    stmt = select(v.c.id).select_from(_with_current_line()).where(el.c.verification_id.is_(None))
    last, done = 0, 0
    while True:
        with engine.begin() as conn:
            ids = list(conn.execute(stmt.where(v.c.id > last).order_by(v.c.id)
                                    .limit(batch_size)).scalars())
            if not ids:
                return done
            done += refresh_lines(conn, ids)
        last = ids[-1]
