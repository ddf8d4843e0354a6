"""The export-line cache: lines rendered at write time, dropped by triggers, never stale.

The invariant: an export from cached lines is byte-for-byte the export rendered from scratch,
whatever was done to the cases in between (store, claim, decide, purge, raw SQL).
"""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from faceid.access.actors import Actor
from faceid.api.simulator import generate_result
from faceid.core.config import Settings
from faceid.reports import retention
from faceid.reports.export import ExportFilter, ExportReport, export_csv
from faceid.review.service import ReviewService
from faceid.store import export_lines, triggers
from faceid.store import write as store
from faceid.store.tables import ExportLine, Verification
from tests.test_export import AUDITOR, EXPECTED_CSV, SMALL_SET, seed_small

REVIEWER = Actor("rita.reviewer", "Rita", "reviewer")
SENIOR = Actor("sam.senior", "Sam", "senior")
ADMIN = Actor("ada.admin", "Ada", "admin")


def _export(engine: Engine, filters: ExportFilter | None = None,
            **kw: Any) -> tuple[bytes, ExportReport]:
    buf = io.BytesIO()
    report = export_csv(engine, buf, filters, kw.pop("actor", AUDITOR), **kw)
    return buf.getvalue(), report


def _from_scratch(engine: Engine, filters: ExportFilter | None = None) -> bytes:
    """The same export with no cached line at all (every line rendered now)."""
    with engine.begin() as conn:
        saved = conn.execute(text("SELECT verification_id, renderer, line FROM export_lines")
                             ).all()
        conn.execute(text("DELETE FROM export_lines"))
    data, report = _export(engine, filters)
    assert report.rendered == report.rows
    with engine.begin() as conn:  # put the cache back as it was
        for vid, tag, line in saved:
            conn.execute(text("INSERT INTO export_lines VALUES (:v, :t, :l)"),
                         {"v": vid, "t": tag, "l": line})
    return data


def _lines(engine: Engine) -> dict[int, str]:
    with Session(engine) as s:
        return {r.verification_id: r.line for r in s.exec(select(ExportLine)).all()}


def _ids(engine: Engine) -> dict[str, int]:
    with Session(engine) as s:
        return {v.biz_id: v.id for v in s.exec(select(Verification)).all()}


def _ingest(engine: Engine, doc: dict[str, Any], hash_key: bytes) -> int:
    stored = store.ingest(engine, json.dumps(doc, ensure_ascii=False).encode(),
                          source="import", hash_key=hash_key)
    assert stored.created and stored.verification_id is not None
    return stored.verification_id


# --------------------------------------------------------------------------- content


def test_literal_file_from_lines_rendered_now_and_from_cached_lines(engine: Engine,
                                                                    hash_key: bytes) -> None:
    # Pins stored_at and decides by direct SQL: the triggers drop every line ingest wrote.
    seed_small(engine, hash_key)
    assert _lines(engine) == {}
    data, report = _export(engine)
    assert data.decode("utf-8") == EXPECTED_CSV
    assert (report.rows, report.rendered) == (3, 3)

    assert export_lines.fill_lines(engine) == 3
    assert export_lines.fill_lines(engine) == 0  # nothing left to do
    data, report = _export(engine)
    assert data.decode("utf-8") == EXPECTED_CSV
    assert (report.rows, report.rendered) == (3, 0)


def test_the_cache_is_really_read(engine: Engine, hash_key: bytes) -> None:
    """A line with the current fingerprint is exported as it is, without being re-rendered:
    what makes the export fast (and why the triggers below must never miss a change)."""
    vid = _ingest(engine, SMALL_SET[1], hash_key)
    with engine.begin() as conn:
        conn.execute(text("UPDATE export_lines SET line = 'cached\r\n' WHERE verification_id "
                          "= :v"), {"v": vid})
    data, report = _export(engine)
    assert data.decode("utf-8").endswith("\r\ncached\r\n")
    assert report.rendered == 0


def test_a_line_from_other_code_is_ignored(engine: Engine, hash_key: bytes,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    vid = _ingest(engine, SMALL_SET[0], hash_key)
    with engine.begin() as conn:
        conn.execute(text("UPDATE export_lines SET line = 'old format\r\n', renderer = 'old' "
                          "WHERE verification_id = :v"), {"v": vid})
    data, report = _export(engine)
    assert "old format" not in data.decode("utf-8") and report.rendered == 1
    assert export_lines.fill_lines(engine) == 1
    # New code (another fingerprint) ignores every line until they are rendered again.
    monkeypatch.setattr(export_lines, "renderer", lambda: "next-release")
    assert _export(engine)[1].rendered == 1
    assert export_lines.fill_lines(engine) == 1
    assert _export(engine)[1].rendered == 0


def test_lines_are_written_with_the_case_and_its_decisions(engine: Engine,
                                                           hash_key: bytes) -> None:
    vid = _ingest(engine, SMALL_SET[0], hash_key)
    assert "张*" in _lines(engine)[vid] and "张三" not in _lines(engine)[vid]
    svc = ReviewService(engine, None, Settings())
    biz_id = SMALL_SET[0]["biz_info"]["biz_id"]
    r = svc.claim(biz_id, REVIEWER, 1)
    assert vid in _lines(engine)  # a claim changes nothing the line shows: kept
    r = svc.decide(biz_id, REVIEWER, "escalate", "spoof_suspected", "mask?", r.version)
    assert ",escalated,escalate,spoof_suspected,rita.reviewer," in _lines(engine)[vid]
    r = svc.claim(biz_id, SENIOR, r.version)
    svc.decide(biz_id, SENIOR, "approve", None, None, r.version)
    assert ",approved,approve,,sam.senior," in _lines(engine)[vid]
    data, report = _export(engine)
    assert report.rendered == 0 and data == _from_scratch(engine)


def test_purge_renders_the_lines_again_without_the_name(engine: Engine,
                                                        hash_key: bytes) -> None:
    vid = _ingest(engine, SMALL_SET[0], hash_key)
    later = datetime.now(UTC) + timedelta(days=40)
    retention.purge(engine, retention.RetentionPolicy(images_days=1, pii_days=30), ADMIN,
                    now=later)
    line = _lines(engine)[vid]
    assert "张" not in line and "110*" not in line
    data, report = _export(engine)
    assert report.rendered == 0 and data == _from_scratch(engine)


# --------------------------------------------------------------------------- the triggers


@pytest.mark.parametrize(("sql", "dropped"), [
    ("UPDATE verifications SET idcard_name = 'Mallory'", True),
    ("UPDATE verifications SET idcard_number = NULL", True),
    ("UPDATE verifications SET decision_state = 'approved'", True),
    ("UPDATE verifications SET risk_flags = ''", True),
    ("UPDATE verifications SET stored_at = verified_at", True),
    ("UPDATE verifications SET biz_no = 'x'", True),
    ("INSERT INTO decisions (verification_id, biz_id, actor, outcome, decided_at, "
     "based_on_version) SELECT id, biz_id, 'bob', 'reject', stored_at, 1 FROM verifications",
     True),
    # Claiming, viewing and the version bump change nothing a line shows.
    ("UPDATE verifications SET assignee = 'bob', claimed_at = stored_at, version = 2", False),
    ("UPDATE verifications SET images_purged_at = stored_at", False),
])
def test_a_change_to_what_a_line_shows_drops_it(engine: Engine, hash_key: bytes, sql: str,
                                                dropped: bool) -> None:
    vid = _ingest(engine, SMALL_SET[0], hash_key)
    with engine.begin() as conn:
        conn.execute(text(sql))
    assert (vid not in _lines(engine)) is dropped
    data, _ = _export(engine)
    assert data == _from_scratch(engine)


def test_the_triggers_watch_every_column_the_export_reads() -> None:
    for dialect in ("sqlite", "postgresql"):
        stmt, _ = export_lines._row_query(dialect)
        sql = str(stmt.compile(compile_kwargs={"literal_binds": True}))
        read = set(re.findall(r"\bverifications\.(\w+)", sql)) - {"id"}
        assert read == set(triggers.EXPORT_LINE_COLUMNS), dialect


# --------------------------------------------------------------------------- the invariant


def test_cached_export_equals_export_from_scratch_after_a_day_of_work(engine: Engine,
                                                                      hash_key: bytes) -> None:
    svc = ReviewService(engine, None, Settings())
    docs = [generate_result(seed, hostile=seed % 4 == 0) for seed in range(24)]
    for doc in docs:
        _ingest(engine, doc, hash_key)
    biz = [d["biz_info"]["biz_id"] for d in docs]
    for i, biz_id in enumerate(biz[:12]):
        r = svc.claim(biz_id, REVIEWER, 1)
        if i % 3 == 0:
            svc.decide(biz_id, REVIEWER, "reject", "spoof_suspected", "mask", r.version)
        elif i % 3 == 1:
            r = svc.decide(biz_id, REVIEWER, "escalate", "face_mismatch", "look", r.version)
            r = svc.claim(biz_id, SENIOR, r.version)
            svc.decide(biz_id, SENIOR, "approve", None, None, r.version)
        else:
            svc.release(biz_id, REVIEWER, r.version)
    later = datetime.now(UTC) + timedelta(days=40)
    retention.purge(engine, retention.RetentionPolicy(images_days=1, pii_days=30), ADMIN,
                    now=later)
    with engine.begin() as conn:  # and someone fixing a row by hand
        conn.execute(text("UPDATE verifications SET biz_no = '=1+1' WHERE id = 5"))
    filters = [None, ExportFilter(decision_state="approved"), ExportFilter(reviewer="sam.senior"),
               ExportFilter(status="OK", liveness="FAIL")]
    for f in filters:
        data, report = _export(engine, f)
        assert report.rendered == (1 if f is None else report.rendered)
        assert data == _from_scratch(engine, f), f
    assert b"'=1+1" in _export(engine)[0]


def test_unmasked_export_never_uses_the_cache(engine: Engine, hash_key: bytes) -> None:
    vid = _ingest(engine, SMALL_SET[0], hash_key)
    with engine.begin() as conn:
        conn.execute(text("UPDATE export_lines SET line = 'cached\r\n'"))
    data, report = _export(engine, actor=ADMIN, unmasked=True)
    assert "张三" in data.decode("utf-8") and "cached" not in data.decode("utf-8")
    assert report.rendered == report.rows == 1
    assert vid in _lines(engine)


# --------------------------------------------------------------------------- the CLI


def test_db_upgrade_and_refresh_export_render_missing_lines(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        hash_key: bytes) -> None:
    from faceid.cli import main as cli
    from faceid.store import schema
    from faceid.store.db import make_engine

    url = f"sqlite:///{tmp_path / 'desk.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    eng = make_engine(url)
    schema.upgrade(eng)
    seed_small(eng, hash_key)  # leaves every line dropped (see the first test)
    assert cli.main(["db", "refresh-export"]) == 0
    assert "export lines rendered: 3" in capsys.readouterr().out
    assert len(_lines(eng)) == 3
    with eng.begin() as conn:
        conn.execute(text("UPDATE export_lines SET renderer = 'old'"))
    assert cli.main(["db", "upgrade"]) == 0
    out = capsys.readouterr().out
    head = ScriptDirectory.from_config(schema.alembic_config(eng)).get_current_head()
    assert "export lines rendered: 3" in out and f"revision: {head}" in out
    assert _export(eng)[0].decode("utf-8") == EXPECTED_CSV
    eng.dispose()


def test_renderer_fingerprint_without_source_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deployment of .pyc files only still gets a stable fingerprint (from the bytecode)."""
    import inspect

    from_source = export_lines.renderer()

    def no_source(module: Any) -> str:
        raise OSError("could not get source code")

    monkeypatch.setattr(inspect, "getsource", no_source)
    export_lines.renderer.cache_clear()
    try:
        first = export_lines.renderer()
        export_lines.renderer.cache_clear()
        assert export_lines.renderer() == first != from_source
    finally:
        export_lines.renderer.cache_clear()


# --------------------------------------------------------------------------- concurrency


def test_a_line_rendered_beside_a_decision_is_never_stale(mt_engine: Engine,
                                                         hash_key: bytes) -> None:
    """``db refresh-export`` (or any refresh) running while a reviewer decides the same case:
    the refresh must wait for the decision's transaction, then render the decided state. On
    PostgreSQL, without a lock it rendered the old state and either overwrote the decision's
    fresh line with it or failed on the line's primary key; SQLite's BEGIN IMMEDIATE
    serialises the two anyway."""
    import threading

    vid = _ingest(mt_engine, SMALL_SET[0], hash_key)
    with mt_engine.begin() as conn:
        conn.execute(text("DELETE FROM export_lines"))  # as after a bulk load
    errors: list[BaseException] = []
    done = threading.Event()

    def refresh() -> None:
        try:
            with mt_engine.begin() as conn:
                export_lines.refresh_lines(conn, [vid])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            done.set()

    with mt_engine.begin() as decider:  # the reviewer's transaction, as decide() runs it
        decider.execute(text("UPDATE verifications SET decision_state = 'approved', "
                             "version = version + 1 WHERE id = :v"), {"v": vid})
        decider.execute(text(
            "INSERT INTO decisions (verification_id, biz_id, actor, outcome, decided_at, "
            "based_on_version) SELECT id, biz_id, 'rita', 'approve', stored_at, 1 "
            "FROM verifications WHERE id = :v"), {"v": vid})
        worker = threading.Thread(target=refresh)
        worker.start()
        assert not done.wait(0.5), "the refresh did not wait for the decision"
        export_lines.refresh_lines(decider, [vid])
    worker.join(30)
    assert not errors, errors
    line = _lines(mt_engine)[vid]
    assert ",approved,approve,,rita," in line, line
    data, report = _export(mt_engine)
    assert report.rendered == 0 and data == _from_scratch(mt_engine)


# --------------------------------------------------------------------------- failures


def test_a_line_that_cannot_be_rendered_never_costs_the_write(
        engine: Engine, hash_key: bytes, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Storing and deciding come first: a rendering bug leaves the case without a line (the
    export renders it), logged without the row's values."""
    real = export_lines.render_lines

    def broken(conn: Any, ids: Any) -> dict[int, str]:
        raise RuntimeError("张三 110101199003071234")  # an error text with personal data

    monkeypatch.setattr(export_lines, "render_lines", broken)
    vid = _ingest(engine, SMALL_SET[0], hash_key)  # stored all the same
    svc = ReviewService(engine, None, Settings())
    biz_id = SMALL_SET[0]["biz_info"]["biz_id"]
    r = svc.claim(biz_id, REVIEWER, 1)
    r = svc.decide(biz_id, REVIEWER, "approve", None, None, r.version)  # decided all the same
    assert r.state == "approved" and _lines(engine) == {}
    logged = caplog.text
    assert "export line not rendered for 1 case(s) (RuntimeError)" in logged
    assert "张三" not in logged and "110101199003071234" not in logged
    monkeypatch.setattr(export_lines, "render_lines", real)
    data, report = _export(engine)
    assert report.rendered == 1 and ",approved,approve,,rita.reviewer," in data.decode()
    assert vid not in _lines(engine)  # the export reads; it does not write


def test_the_desk_renders_missing_lines_in_the_background(mt_engine: Engine,
                                                          hash_key: bytes) -> None:
    """A start after a bulk load or a format change: the desk fills the lines itself."""
    from faceid.app import fill_export_lines_in_background

    for doc in SMALL_SET:
        _ingest(mt_engine, doc, hash_key)
    with mt_engine.begin() as conn:
        conn.execute(text("UPDATE export_lines SET renderer = 'an older release'"))
    fill_export_lines_in_background(mt_engine).join(30)
    data, report = _export(mt_engine)
    assert report.rendered == 0 and len(_lines(mt_engine)) == 3
    assert data == _from_scratch(mt_engine)
