"""Database triggers that make write-once and append-only tables really so.

Code paths could forget; a trigger cannot. ``raw_responses`` may be updated exactly once, by
the retention purge (which must set ``purged_at``); ``decisions`` and ``audit_events`` never.
"""

from __future__ import annotations

from sqlalchemy import Connection

APPEND_ONLY = ("decisions", "audit_events")

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


def install(conn: Connection) -> None:
    for sql in _PG if conn.dialect.name == "postgresql" else _SQLITE:
        conn.exec_driver_sql(sql)


def drop(conn: Connection) -> None:
    for sql in _DROP_PG if conn.dialect.name == "postgresql" else _DROP_SQLITE:
        conn.exec_driver_sql(sql)
