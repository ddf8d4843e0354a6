"""Migrations and models agree; write-once and append-only are enforced by the database."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, SQLModel

from faceid.store import audit, schema
from faceid.store import write as store
from faceid.store.db import make_engine
from tests.conftest import empty_engine


@pytest.fixture(params=["file", pytest.param("postgres", marks=pytest.mark.postgres)])
def migrated(request: pytest.FixtureRequest, tmp_path) -> Engine:
    """An empty database brought up by the Alembic migrations (not ``create_all``)."""
    eng = empty_engine(request.param, tmp_path)
    schema.upgrade(eng)
    yield eng
    eng.dispose()


def test_migrations_match_the_models(migrated: Engine) -> None:
    with migrated.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


def test_downgrade_and_upgrade_again(migrated: Engine) -> None:
    schema.downgrade(migrated, "base")
    schema.upgrade(migrated)
    with migrated.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() is not None


def test_sqlite_pragmas(tmp_path) -> None:
    eng = make_engine(f"sqlite:///{tmp_path}/p.db")
    with eng.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10000


def _stored(engine: Engine, page_success: bytes) -> None:
    store.ingest(engine, page_success, source="import", hash_key=b"k")


@pytest.mark.parametrize("sql", [
    "UPDATE audit_events SET actor = 'mallory'",
    "DELETE FROM audit_events",
    "UPDATE raw_responses SET body = '{}'",
    "DELETE FROM raw_responses",
])
def test_append_only_and_write_once_enforced(migrated: Engine, page_success: bytes,
                                             sql: str) -> None:
    _stored(migrated, page_success)
    with pytest.raises(DBAPIError, match="append-only|write-once"), migrated.begin() as conn:
        conn.execute(text(sql))


def test_raw_response_may_be_purged_exactly_once(migrated: Engine, page_success: bytes) -> None:
    _stored(migrated, page_success)
    with migrated.begin() as conn:
        conn.execute(text("UPDATE raw_responses SET body = '{}', purged_at = CURRENT_TIMESTAMP"))
    with pytest.raises(DBAPIError, match="write-once"), migrated.begin() as conn:
        conn.execute(text("UPDATE raw_responses SET body = '{\"x\": 1}'"))


def test_audit_chain_detects_tampering(engine: Engine) -> None:
    with Session(engine) as s:
        for i in range(5):
            audit.record(s, "alice", "view", f"1,{i}", {"i": i})
        s.commit()
    with Session(engine) as s:
        assert audit.verify_chain(s).ok
    # Someone with DBA rights disables the trigger and edits a row.
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER audit_events_no_update")
        else:
            conn.exec_driver_sql("ALTER TABLE audit_events DISABLE TRIGGER USER")
        conn.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE id = 3"))
    with Session(engine) as s:
        report = audit.verify_chain(s)
    assert not report.ok and report.first_broken_id == 3 and "altered" in report.describe()


def test_migrated_schema_keeps_export_lines_fresh(migrated: Engine, page_success: bytes) -> None:
    """Revision 0002's triggers, as migrated (not create_all): a changed name drops the line."""
    _stored(migrated, page_success)
    with migrated.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM export_lines")).scalar_one() == 1
        conn.execute(text("UPDATE verifications SET idcard_name = 'Mallory'"))
        assert conn.execute(text("SELECT count(*) FROM export_lines")).scalar_one() == 0
