"""Database triggers: write-once and append-only tables, and export-line invalidation.

Code paths could forget; a trigger cannot.

- **Integrity** (revision 0001): ``raw_responses`` may be updated exactly once, by the
  retention purge (which must set ``purged_at``); ``decisions`` and ``audit_events`` never.
- **Export lines** (revision 0002): ``export_lines`` caches each case's rendered CSV line. Any
  change to a verification column the line shows, and any new decision (the line shows the
  latest), deletes the line in the same transaction, whoever makes the change (a service, the
  purge, someone in a SQL shell). A stale line can therefore never be exported; a missing one
  is rendered on the fly (``faceid.reports.export``).
"""

from __future__ import annotations

from sqlalchemy import Connection

APPEND_ONLY = ("decisions", "audit_events")

#: Verification columns an export line shows (a test checks that ``faceid.store.export_lines``'
#: query reads no other). Changing the export's columns needs a migration that re-creates the
#: triggers.
EXPORT_LINE_COLUMNS = (
    "biz_id", "biz_no", "status", "fail_reason", "procedure_type", "liveness_result",
    "faceid_confidence", "faceid_band", "verify_error", "genuineness_exceeded", "risk_flags",
    "idcard_name", "idcard_number", "decision_state", "verified_at", "stored_at",
)
_COLS = ", ".join(EXPORT_LINE_COLUMNS)

_SQLITE = [
    *(
        f"""CREATE TRIGGER IF NOT EXISTS {t}_no_{op.lower()} BEFORE {op} ON {t}
        BEGIN SELECT RAISE(ABORT, '{t} is append-only'); END"""
        for t in APPEND_ONLY
        for op in ("UPDATE", "DELETE")
    ),
    """CREATE TRIGGER IF NOT EXISTS raw_responses_no_delete BEFORE DELETE ON raw_responses
    BEGIN SELECT RAISE(ABORT, 'raw_responses is write-once'); END""",
    """CREATE TRIGGER IF NOT EXISTS raw_responses_write_once BEFORE UPDATE ON raw_responses
    WHEN OLD.purged_at IS NOT NULL OR NEW.purged_at IS NULL
    BEGIN SELECT RAISE(ABORT, 'raw_responses is write-once'); END""",
]

_PG = [
    """CREATE OR REPLACE FUNCTION faceid_forbid() RETURNS trigger AS $$
    BEGIN RAISE EXCEPTION USING MESSAGE = TG_TABLE_NAME || ' is ' || TG_ARGV[0]; END;
    $$ LANGUAGE plpgsql""",
    *(
        f"""CREATE OR REPLACE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t}
        FOR EACH ROW EXECUTE FUNCTION faceid_forbid('append-only')"""
        for t in APPEND_ONLY
    ),
    """CREATE OR REPLACE TRIGGER raw_responses_no_delete BEFORE DELETE ON raw_responses
    FOR EACH ROW EXECUTE FUNCTION faceid_forbid('write-once')""",
    """CREATE OR REPLACE TRIGGER raw_responses_write_once BEFORE UPDATE ON raw_responses
    FOR EACH ROW WHEN (OLD.purged_at IS NOT NULL OR NEW.purged_at IS NULL)
    EXECUTE FUNCTION faceid_forbid('write-once')""",
]

_LINES_SQLITE = [
    f"""CREATE TRIGGER IF NOT EXISTS export_lines_stale_on_update AFTER UPDATE OF {_COLS}
    ON verifications
    BEGIN DELETE FROM export_lines WHERE verification_id = OLD.id; END""",
    """CREATE TRIGGER IF NOT EXISTS export_lines_gone_on_delete BEFORE DELETE ON verifications
    BEGIN DELETE FROM export_lines WHERE verification_id = OLD.id; END""",
    """CREATE TRIGGER IF NOT EXISTS export_lines_stale_on_decision AFTER INSERT ON decisions
    BEGIN DELETE FROM export_lines WHERE verification_id = NEW.verification_id; END""",
]

_LINES_PG = [
    # TG_ARGV[0] names the column holding the verification id (OLD.id or NEW.verification_id).
    """CREATE OR REPLACE FUNCTION faceid_drop_export_line() RETURNS trigger AS $$
    BEGIN
      IF TG_OP = 'INSERT' THEN
        DELETE FROM export_lines WHERE verification_id = NEW.verification_id;
        RETURN NULL;
      END IF;
      DELETE FROM export_lines WHERE verification_id = OLD.id;
      IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
      RETURN NULL;
    END;
    $$ LANGUAGE plpgsql""",
    f"""CREATE OR REPLACE TRIGGER export_lines_stale_on_update AFTER UPDATE OF {_COLS}
    ON verifications FOR EACH ROW EXECUTE FUNCTION faceid_drop_export_line()""",
    """CREATE OR REPLACE TRIGGER export_lines_gone_on_delete BEFORE DELETE ON verifications
    FOR EACH ROW EXECUTE FUNCTION faceid_drop_export_line()""",
    """CREATE OR REPLACE TRIGGER export_lines_stale_on_decision AFTER INSERT ON decisions
    FOR EACH ROW EXECUTE FUNCTION faceid_drop_export_line()""",
]

_DROP_LINES_SQLITE = [
    "DROP TRIGGER IF EXISTS export_lines_stale_on_update",
    "DROP TRIGGER IF EXISTS export_lines_gone_on_delete",
    "DROP TRIGGER IF EXISTS export_lines_stale_on_decision",
]
_DROP_LINES_PG = [
    "DROP TRIGGER IF EXISTS export_lines_stale_on_update ON verifications",
    "DROP TRIGGER IF EXISTS export_lines_gone_on_delete ON verifications",
    "DROP TRIGGER IF EXISTS export_lines_stale_on_decision ON decisions",
    "DROP FUNCTION IF EXISTS faceid_drop_export_line()",
]

_DROP_SQLITE = [
    *(f"DROP TRIGGER IF EXISTS {t}_no_{op}" for t in APPEND_ONLY for op in ("update", "delete")),
    "DROP TRIGGER IF EXISTS raw_responses_no_delete",
    "DROP TRIGGER IF EXISTS raw_responses_write_once",
]
_DROP_PG = [
    *(f"DROP TRIGGER IF EXISTS {t}_append_only ON {t}" for t in APPEND_ONLY),
    "DROP TRIGGER IF EXISTS raw_responses_no_delete ON raw_responses",
    "DROP TRIGGER IF EXISTS raw_responses_write_once ON raw_responses",
    "DROP FUNCTION IF EXISTS faceid_forbid()",
]


def _run(conn: Connection, pg: list[str], sqlite: list[str]) -> None:
    for sql in pg if conn.dialect.name == "postgresql" else sqlite:
        conn.exec_driver_sql(sql)


def install_integrity(conn: Connection) -> None:
    _run(conn, _PG, _SQLITE)


def drop_integrity(conn: Connection) -> None:
    _run(conn, _DROP_PG, _DROP_SQLITE)


def install_export_lines(conn: Connection) -> None:
    _run(conn, _LINES_PG, _LINES_SQLITE)


def drop_export_lines(conn: Connection) -> None:
    _run(conn, _DROP_LINES_PG, _DROP_LINES_SQLITE)


def install(conn: Connection) -> None:
    """Every trigger of the current schema (``schema.create_all``; migrations install theirs)."""
    install_integrity(conn)
    install_export_lines(conn)
