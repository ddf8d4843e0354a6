"""The governed CSV export: literal content, formula neutralisation, masking, audit, CLI."""

from __future__ import annotations

import argparse
import csv
import io
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from faceid.access.actors import Actor
from faceid.api.simulator import generate_result
from faceid.cli import main as cli
from faceid.cli.commands import export as export_cmd
from faceid.core.csvsafe import MAYBE_FORMULA, frame_csv, neutralise
from faceid.reports.export import (
    ExportError,
    ExportFilter,
    ExportRefused,
    count_rows,
    export_csv,
)
from faceid.store import schema
from faceid.store import write as store
from faceid.store.db import make_engine
from faceid.store.export_lines import COLUMN_NAMES, EXPORT_COLUMNS
from faceid.store.tables import AuditEvent, Decision, User, Verification

AUDITOR = Actor("ann.auditor", "Ann", "auditor")
REVIEWER = Actor("rita.reviewer", "Rita", "reviewer")
SENIOR = Actor("sam.senior", "Sam", "senior")
ADMIN = Actor("ada.admin", "Ada", "admin")

THRESHOLDS = {"1e-3": 62.169, "1e-4": 69.315, "1e-5": 74.399, "1e-6": 78.038}
FORMULA_START = set("=+-@\t\r\n\0")


# --------------------------------------------------------------------------- seeding


def _doc(biz_id: str, biz_no: str, status: str, **parts: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"request_id": "1,r", "status": status,
                           "biz_info": {"biz_id": biz_id, "biz_no": biz_no,
                                        "biz_extra_data": ""}}
    doc.update(parts)
    return doc


def _idcard(name: str, number: str) -> dict[str, Any]:
    return {"idcard_mode": "3", "idcard_name": name, "idcard_number": number}


def _liveness(ptype: str, result: str, mask: float = 0.01) -> dict[str, Any]:
    return {"procedure_type": ptype, "result": result,
            "details": {"UPLOAD_TIMES": 1, "FACE_NOT_FOUND": 0, "LOW_FACE_QUALITY": 0,
                        "INVALID_VIDEO_DURATION": 0, "SR_ERROR": 0, "NOT_SYNCHRONIZED": 0,
                        "NO_AUDIO": 0, "VIDEO_FORMAT_UNSUPPORTED": 0,
                        "VIDEO_FACE_INCONSISTENT": 0},
            "face_genuineness": {"synthetic_face_confidence": 0.01,
                                 "synthetic_face_threshold": 0.5,
                                 "mask_confidence": mask, "mask_threshold": 0.5,
                                 "screen_replay_confidence": 0.02,
                                 "screen_replay_threshold": 0.5, "face_replaced": 0}}


SMALL_SET = [
    _doc("1700000000,aaaa-1", "order-1", "OK",
         idcard_info=_idcard("张三", "110101199003071234"),
         liveness_result=_liveness("video", "PASS"),
         verify_result={"error_message": None,
                        "result_faceid": {"confidence": 72.0, "thresholds": THRESHOLDS},
                        "verify_time": 1700000100}),
    _doc("1700000200,bbbb-2", "order-2", "WEBRTC_UNSUPPORTED", fail_reason="NETWORK_ERROR"),
    _doc("1700000400,cccc-3", "order-3", "OK",
         idcard_info=_idcard("欧阳娜娜", "31010519850101002X"),
         liveness_result=_liveness("video", "FAIL", mask=0.8),
         verify_result={"error_message": "NO_SUCH_ID_NUMBER", "verify_time": 1700000500}),
]

EXPECTED_CSV = (
    "\ufeff"
    "biz_id,biz_no,status,fail_reason,procedure_type,liveness_result,faceid_confidence,"
    "faceid_band,verify_error,genuineness_exceeded,risk_flags,idcard_name,idcard_number,"
    "decision_state,decision,decision_reason,reviewer,decided_at,verified_at,stored_at\r\n"
    '"1700000000,aaaa-1",order-1,OK,,video,PASS,72.0,1e-4,,,,张*,110*************34,'
    "approved,approve,,alice,2023-11-15T00:00:00Z,2023-11-14T22:15:00Z,2023-11-14T23:00:00Z\r\n"
    '"1700000200,bbbb-2",order-2,WEBRTC_UNSUPPORTED,NETWORK_ERROR,,,,,,,status_not_ok,,,'
    "pending,,,,,,2023-11-15T23:00:00Z\r\n"
    '"1700000400,cccc-3",order-3,OK,,video,FAIL,,,NO_SUCH_ID_NUMBER,mask,'
    '"liveness_fail,verify_error,genuineness",欧***,310*************2X,'
    "rejected,reject,spoof_suspected,carol,2023-11-17T09:30:00Z,2023-11-14T22:21:40Z,"
    "2023-11-16T23:00:00Z\r\n"
)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _decide(engine: Engine, biz_id: str, actor: str, outcome: str, reason: str | None,
            at: datetime, state: str) -> None:
    """A decision as ReviewService.decide leaves it: an appended row + the mirrored state."""
    with Session(engine) as s:
        v = s.exec(select(Verification).where(Verification.biz_id == biz_id)).one()
        s.add(Decision(verification_id=v.id, biz_id=biz_id, actor=actor, outcome=outcome,
                       reason=reason, decided_at=at, based_on_version=v.version))
        v.decision_state, v.decided_by, v.decided_at = state, actor, at
        s.add(v)
        s.commit()


def seed_small(engine: Engine, hash_key: bytes) -> None:
    for i, doc in enumerate(SMALL_SET):
        stored = store.ingest(engine, json.dumps(doc).encode(), source="import",
                              hash_key=hash_key)
        assert stored.created, stored
        # stored_at is "now" at ingest: pin it so the expected file is a literal.
        with Session(engine) as s:
            s.exec(update(Verification).where(col(Verification.biz_id) == doc["biz_info"]
                                              ["biz_id"])
                   .values(stored_at=_at(f"2023-11-{14 + i}T23:00:00")))
            s.commit()
    _decide(engine, "1700000000,aaaa-1", "alice", "approve", None,
            _at("2023-11-15T00:00:00"), "approved")
    _decide(engine, "1700000400,cccc-3", "bob", "escalate", "spoof_suspected",
            _at("2023-11-17T08:00:00"), "escalated")
    _decide(engine, "1700000400,cccc-3", "carol", "reject", "spoof_suspected",
            _at("2023-11-17T09:30:00"), "rejected")


def _export(engine: Engine, filters: ExportFilter | None = None, actor: Actor = AUDITOR,
            **kw: Any) -> bytes:
    buf = io.BytesIO()
    export_csv(engine, buf, filters, actor, **kw)
    return buf.getvalue()


def _rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def _events(engine: Engine, action: str) -> list[AuditEvent]:
    with Session(engine) as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.action == action)
                           .order_by(col(AuditEvent.id))).all())


# --------------------------------------------------------------------------- content


def test_export_of_small_set_is_exactly_the_expected_file(engine: Engine,
                                                          hash_key: bytes) -> None:
    seed_small(engine, hash_key)
    data = _export(engine)
    assert data.decode("utf-8") == EXPECTED_CSV
    assert data.startswith(b"\xef\xbb\xbf")  # BOM: Excel then reads the Chinese correctly
    assert data.count(b"\r\n") == 4 and b"\n" not in data.replace(b"\r\n", b"")


def test_documented_columns_are_the_file_header() -> None:
    assert tuple(c for c, _ in EXPORT_COLUMNS) == COLUMN_NAMES
    assert EXPECTED_CSV.splitlines()[0].lstrip("\ufeff").split(",") == list(COLUMN_NAMES)
    required = {"biz_id", "biz_no", "status", "fail_reason", "procedure_type",
                "liveness_result", "faceid_confidence", "faceid_band", "verify_error",
                "risk_flags", "idcard_name", "idcard_number", "decision", "decision_reason",
                "reviewer", "decided_at", "verified_at", "stored_at"}
    assert required <= set(COLUMN_NAMES)
    assert all(desc for _, desc in EXPORT_COLUMNS)


def test_small_pages_give_the_same_file(engine: Engine, hash_key: bytes) -> None:
    seed_small(engine, hash_key)
    for size in (1, 2, 3):  # keyset paging must neither skip nor repeat rows
        assert _export(engine, page_size=size) == EXPECTED_CSV.encode()


def test_biz_ids_with_commas_quotes_and_newlines_round_trip(engine: Engine,
                                                           hash_key: bytes) -> None:
    odd = ['1700000000,"quoted",x', "a,b,c", "line\nbreak,1", "semi;colon"]
    for i, biz_id in enumerate(odd):
        store.ingest(engine, json.dumps(_doc(biz_id, f"n{i}", "OK")).encode(),
                     source="import", hash_key=hash_key)
    rows = list(csv.reader(io.StringIO(_export(engine).decode("utf-8-sig"), newline="")))
    assert rows[0] == list(COLUMN_NAMES)
    assert [r[0] for r in rows[1:]] == odd
    assert all(len(r) == len(COLUMN_NAMES) for r in rows)


# --------------------------------------------------------------------------- filters


@pytest.mark.parametrize(("filters", "expected"), [
    (ExportFilter(), {"aaaa-1", "bbbb-2", "cccc-3"}),
    (ExportFilter(status="OK"), {"aaaa-1", "cccc-3"}),
    (ExportFilter(liveness="FAIL"), {"cccc-3"}),
    (ExportFilter(decision_state="pending"), {"bbbb-2"}),
    (ExportFilter(reviewer="carol"), {"cccc-3"}),
    (ExportFilter(reviewer="bob"), set()),  # bob's decision is not the latest any more
    # verified_at is 2023-11-14 for both compared cases; bbbb-2 has none.
    (ExportFilter(date_from=date(2023, 11, 14), date_to=date(2023, 11, 14)),
     {"aaaa-1", "cccc-3"}),
    (ExportFilter(date_from=date(2023, 11, 15), date_field="stored_at"), {"bbbb-2", "cccc-3"}),
    # The default, the case time: verify time, else stored (bbbb-2 failed before any compare).
    (ExportFilter(date_from=date(2023, 11, 15), date_to=date(2023, 11, 15)), {"bbbb-2"}),
    (ExportFilter(date_to=date(2023, 11, 14)), {"aaaa-1", "cccc-3"}),
    (ExportFilter(date_from=date(2023, 11, 15), date_field="verified_at"), set()),
    (ExportFilter(date_to=date(2023, 11, 14), date_field="stored_at"), {"aaaa-1"}),
    (ExportFilter(status="OK", liveness="PASS", decision_state="approved", reviewer="alice"),
     {"aaaa-1"}),
])
def test_filters(engine: Engine, hash_key: bytes, filters: ExportFilter,
                 expected: set[str]) -> None:
    seed_small(engine, hash_key)
    got = {r["biz_id"].split(",")[1] for r in _rows(_export(engine, filters))}
    assert got == expected
    event = _events(engine, "export")[-1]
    detail = json.loads(event.detail or "{}")
    assert detail["rows"] == len(expected)
    assert detail["filters"] == filters.describe()
    assert count_rows(engine, filters) == len(expected)  # what the page announces


@pytest.mark.parametrize("bad", [
    ExportFilter(liveness="MAYBE"), ExportFilter(decision_state="lost"),
    ExportFilter(date_from=date(2024, 1, 2), date_to=date(2024, 1, 1)),
])
def test_invalid_filters_are_refused(engine: Engine, bad: ExportFilter) -> None:
    with pytest.raises(ExportError):
        _export(engine, bad)
    with pytest.raises(ExportError):
        count_rows(engine, bad)
    assert _events(engine, "export") == []


# --------------------------------------------------------------------------- CSV injection

HOSTILE = [
    '=HYPERLINK("http://x","a")', "+cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3", "\tTAB",
    "\rCR", "\nLF", "\x00NUL", "  =1+1", "\u3000=1+1", "\u200b=1+1", "＝1+1",
]
TEXT_FIELDS = ["biz_id", "biz_no", "status", "fail_reason", "procedure_type",
               "liveness_result", "faceid_band", "verify_error", "genuineness_exceeded",
               "risk_flags", "idcard_name", "idcard_number", "decision_state"]


def _fits(field: str, payload: str) -> str:
    # PostgreSQL enforces VARCHAR lengths; keep the dangerous first characters.
    length = getattr(Verification.__table__.c[field].type, "length", None)
    return payload[:length] if length else payload


def _storable(engine: Engine) -> list[str]:
    # PostgreSQL text cannot hold NUL at all, so that payload can only reach a SQLite export.
    pg = engine.dialect.name == "postgresql"
    return [p for p in HOSTILE if not (pg and "\x00" in p)]


def _seed_hostile(engine: Engine) -> dict[str, dict[str, str]]:
    """One verification per payload with the payload in every text column and decision."""
    written: dict[str, dict[str, str]] = {}
    with Session(engine) as s:
        for i, payload in enumerate(_storable(engine)):
            values = {f: _fits(f, payload) for f in TEXT_FIELDS}
            values["biz_id"] = _fits("biz_id", f"{payload}#{i}")  # unique
            v = Verification(**values, stored_at=_at("2024-01-01T00:00:00"))
            s.add(v)
            s.flush()
            s.add(Decision(verification_id=v.id, biz_id=values["biz_id"], actor=payload,
                           outcome=payload[:32], reason=payload[:64],
                           decided_at=_at("2024-01-02T00:00:00"), based_on_version=1))
            written[values["biz_id"]] = {**values, "decision": payload[:32],
                                         "decision_reason": payload[:64], "reviewer": payload}
        s.commit()
    return written


def _is_formula(cell: str) -> bool:
    bare = cell.lstrip().lstrip("\u200b\ufeff").lstrip()
    return bool(cell) and (cell[0] in FORMULA_START or bare[:1] in FORMULA_START | set("＝"))


@pytest.mark.parametrize("payload", HOSTILE)
def test_neutralise_prefixes_every_formula_start(payload: str) -> None:
    assert neutralise(payload) == "'" + payload
    assert not _is_formula(neutralise(payload))


@pytest.mark.parametrize("safe", ["", "张三", "<script>alert(1)</script>", "1e-3", "a=b",
                                  "order-1", " plain", "'already"])
def test_neutralise_leaves_ordinary_text_alone(safe: str) -> None:
    assert neutralise(safe) == safe


@pytest.mark.parametrize("first", sorted(set("=+-@\t\r\n\x00 \u3000\xa0\u200b\ufeff＝＋－＠")))
def test_fast_path_never_misses_a_cell_needing_a_look(first: str) -> None:
    # neutralise_row only calls neutralise() on rows this regex flags: it must flag every start.
    assert MAYBE_FORMULA.search("\x01ok\x01" + first + "x\x01tail")
    assert MAYBE_FORMULA.search("\x01" + first + "x")


def test_frame_csv_neutralises_labels_and_keeps_numbers() -> None:
    frame = pd.DataFrame({"value": ["=HYPERLINK(1)", "OK", "-2+3"], "cases": [3, 1, -2],
                          "rate": [0.5, None, -1.25],
                          "day": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"])})
    assert frame_csv(frame).decode("utf-8") == (
        "\ufeffvalue,cases,rate,day\r\n'=HYPERLINK(1),3,0.5,2024-01-01\r\n"
        "OK,1,,2024-01-02\r\n'-2+3,-2,-1.25,2024-01-03\r\n")


def test_hostile_text_in_every_exported_field_is_neutralised(engine: Engine) -> None:
    written = _seed_hostile(engine)
    data = _export(engine, actor=ADMIN, unmasked=True)
    rows = _rows(data)
    assert len(rows) == len(_storable(engine))
    for row in rows:
        original = written[row["biz_id"][1:]]  # strip our own prefix to find the source
        for field, value in original.items():
            assert row[field] == "'" + value, (field, value, row[field])
    masked = _rows(_export(engine))
    for row in masked:
        for field in (*TEXT_FIELDS, "decision", "decision_reason", "reviewer"):
            assert not _is_formula(row[field]), (field, row[field])


def test_simulated_hostile_ocr_is_neutralised_and_html_passes_as_text(
        engine: Engine, hash_key: bytes) -> None:
    doc = generate_result(7, hostile=True)
    store.ingest(engine, json.dumps(doc).encode(), source="import", hash_key=hash_key)
    with Session(engine) as s:
        v = s.exec(select(Verification)).one()
        s.add(Decision(verification_id=v.id, biz_id=v.biz_id, actor="x",
                       outcome="reject", reason="<script>alert(1)</script>",
                       decided_at=_at("2024-01-02T00:00:00"), based_on_version=1))
        s.commit()
    (row,) = _rows(_export(engine, actor=ADMIN, unmasked=True))
    assert row["idcard_name"] == "'" + doc["idcard_info"]["idcard_name"]
    # A CSV is not HTML: markup is data here and is kept verbatim (the pages escape it).
    assert row["decision_reason"] == "<script>alert(1)</script>"
    for field in COLUMN_NAMES:
        assert not _is_formula(row[field]), (field, row[field])


# --------------------------------------------------------------------------- masking / audit


def test_masked_by_default(engine: Engine, hash_key: bytes) -> None:
    seed_small(engine, hash_key)
    text = _export(engine).decode("utf-8-sig")
    for clear in ("张三", "110101199003071234", "欧阳娜娜", "31010519850101002X"):
        assert clear not in text
    (event,) = _events(engine, "export")
    detail = json.loads(event.detail or "{}")
    assert detail == {"columns": len(COLUMN_NAMES), "filters": {}, "format": "csv", "rows": 3,
                      "unmasked": False}
    assert event.actor == AUDITOR.username


@pytest.mark.parametrize("actor", [AUDITOR, REVIEWER, SENIOR])
def test_unmasked_refused_for_roles_that_may_not(engine: Engine, hash_key: bytes,
                                                 actor: Actor) -> None:
    seed_small(engine, hash_key)
    buf = io.BytesIO()
    with pytest.raises(ExportRefused):
        export_csv(engine, buf, ExportFilter(status="OK"), actor, unmasked=True)
    assert buf.getvalue() == b""  # not one byte written
    (refused,) = _events(engine, "export_refused")
    assert refused.actor == actor.username
    assert json.loads(refused.detail or "{}")["filters"] == {"status": "OK"}
    assert _events(engine, "export") == []


def test_unmasked_allowed_for_admin_and_recorded_before_and_after(engine: Engine,
                                                                  hash_key: bytes) -> None:
    seed_small(engine, hash_key)
    text = _export(engine, ExportFilter(status="OK"), actor=ADMIN, unmasked=True)
    rows = _rows(text)
    assert [(r["idcard_name"], r["idcard_number"]) for r in rows] == [
        ("张三", "110101199003071234"), ("欧阳娜娜", "31010519850101002X")]
    (start,) = _events(engine, "export_unmasked_start")
    (done,) = _events(engine, "export")
    assert start.id is not None and done.id is not None and start.id < done.id
    assert start.actor == done.actor == ADMIN.username
    assert json.loads(done.detail or "{}") == {
        "columns": len(COLUMN_NAMES), "filters": {"status": "OK"}, "format": "csv", "rows": 2,
        "unmasked": True}
    with Session(engine) as s:  # the trail never holds the personal data it protects
        trail = " ".join(e.detail or "" for e in s.exec(select(AuditEvent)).all())
    for clear in ("张三", "110101199003071234", "欧阳娜娜", "31010519850101002X"):
        assert clear not in trail


def test_path_output_is_atomic_and_identical(engine: Engine, hash_key: bytes,
                                            tmp_path: Path) -> None:
    seed_small(engine, hash_key)
    out = tmp_path / "export.csv"
    report = export_csv(engine, out, None, AUDITOR)
    assert report.rows == 3 and report.path == str(out)
    assert out.read_bytes() == EXPECTED_CSV.encode()
    assert [p.name for p in tmp_path.iterdir()] == ["export.csv"]  # no .part left behind


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def file_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hash_key: bytes) -> Engine:
    url = f"sqlite:///{tmp_path / 'desk.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    for var in ("FACEID_API_KEY", "FACEID_API_SECRET"):
        monkeypatch.delenv(var, raising=False)
    eng = make_engine(url)
    schema.create_all(eng)
    seed_small(eng, hash_key)
    with Session(eng) as s:
        s.add(User(username="root", display_name="Root", role="admin",
                   created_at=_at("2024-01-01T00:00:00")))
        s.add(User(username="rita", role="reviewer", created_at=_at("2024-01-01T00:00:00")))
        s.commit()
    return eng


def _cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    # The verb is registered by faceid/cli.py's VERBS; register it here in case it is not yet.
    monkeypatch.setitem(cli.VERBS, "export", ("export", "export verifications as CSV"))
    return cli.main(["export", *argv])


def test_cli_writes_the_same_file(file_db: Engine, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.csv"
    assert _cli(["--out", str(out)], monkeypatch) == 0
    assert out.read_bytes() == EXPECTED_CSV.encode()
    printed = capsys.readouterr().out
    assert "wrote 3 rows (masked)" in printed
    # seed_small's direct SQL dropped the cached lines: said, with the way to render them.
    assert "note: 3 row(s) had no cached export line" in printed
    assert cli.main(["db", "refresh-export"]) == 0
    assert _cli(["--out", str(out)], monkeypatch) == 0
    assert "note:" not in capsys.readouterr().out
    assert out.read_bytes() == EXPECTED_CSV.encode()
    events = _events(file_db, "export")
    assert len(events) == 2 and all(e.actor.startswith("cli:") for e in events)

    filtered = tmp_path / "filtered.csv"
    assert _cli(["--out", str(filtered), "--from", "2023-11-14", "--to", "2023-11-14",
                 "--status", "OK", "--liveness", "FAIL", "--decision", "rejected",
                 "--reviewer", "carol"], monkeypatch) == 0
    assert filtered.read_bytes() == _export(
        file_db, ExportFilter(date_from=date(2023, 11, 14), date_to=date(2023, 11, 14),
                              status="OK", liveness="FAIL", decision_state="rejected",
                              reviewer="carol"))


def test_cli_unmasked_needs_an_allowed_user(file_db: Engine, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "u.csv"
    assert _cli(["--out", str(out), "--unmasked"], monkeypatch) == 2
    assert _cli(["--out", str(out), "--unmasked", "--as", "rita"], monkeypatch) == 2
    assert _cli(["--out", str(out), "--unmasked", "--as", "nobody"], monkeypatch) == 2
    assert "may not export" in capsys.readouterr().err
    assert not out.exists()
    assert _cli(["--out", str(out), "--unmasked", "--as", "root"], monkeypatch) == 0
    assert "张三" in out.read_text(encoding="utf-8-sig")
    assert [e.actor for e in _events(file_db, "export_unmasked_start")] == ["root"]
    assert [e.actor for e in _events(file_db, "export_refused")] == ["rita"]


def test_cli_parser_rejects_bad_values() -> None:
    p = argparse.ArgumentParser()
    export_cmd.add_arguments(p)
    with pytest.raises(SystemExit):
        p.parse_args(["--out", "x.csv", "--from", "yesterday"])
    with pytest.raises(SystemExit):
        p.parse_args(["--out", "x.csv", "--liveness", "MAYBE"])
    args = p.parse_args(["--out", "x.csv", "--from", "2024-02-29"])
    assert args.date_from == date(2024, 2, 29) and args.date_field == "case"
