"""InsightsService: failed-verification audit, metrics, compare and linked cases (SQL + PG)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from faceid.access.actors import Actor
from faceid.api.simulator import generate_batch
from faceid.reports import export
from faceid.reports.insights import InsightsError, InsightsService
from faceid.reports.queries import AGE_BUCKETS, FAILURE_REASONS, NO_PROCEDURE, InsightFilter
from faceid.store import write as store
from faceid.store.tables import Decision, Verification
from tests.fakes import person_doc


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _v(biz_id: str, *, verified: str | None, stored: str, state: str = "pending",
       flags: str = "", **cols: Any) -> Verification:
    base: dict[str, Any] = {"status": "OK", "liveness_result": "PASS", "faceid_band": "1e-4",
                            "procedure_type": "video"}
    base.update(cols)
    return Verification(biz_id=biz_id, verified_at=_at(verified) if verified else None,
                        stored_at=_at(stored), decision_state=state, risk_flags=flags,
                        risk_count=len([f for f in flags.split(",") if f]), **base)


def _seven() -> list[Verification]:
    """Seven cases over three UTC days; columns set as summary.columns would derive them."""
    return [
        _v("v1", verified="2024-03-01T10:00:00", stored="2024-03-05T00:00:00"),
        _v("v2", verified="2024-03-01T11:00:00", stored="2024-03-05T00:00:00",
           procedure_type="still", liveness_result="FAIL", faceid_band=None, state="rejected",
           flags="liveness_fail"),
        _v("v3", verified=None, stored="2024-03-02T08:00:00", status="WEBRTC_UNSUPPORTED",
           fail_reason="NETWORK_ERROR", procedure_type=None, liveness_result=None, faceid_band=None,
           flags="status_not_ok"),
        _v("v4", verified="2024-03-02T09:00:00", stored="2024-03-05T00:00:00", faceid_band="none",
           state="escalated", flags="compare_below_1e-3"),
        _v("v5", verified="2024-03-03T09:00:00", stored="2024-03-05T00:00:00",
           procedure_type="selfie", faceid_band="1e-6", verify_error="NO_SUCH_ID_NUMBER",
           genuineness_exceeded="mask", face_replaced=1, id_attacked=1, multifaces=True,
           flags="verify_error,genuineness,face_replaced,id_attacked,multifaces,parse_flags"),
        _v("v6", verified="2024-03-03T10:00:00", stored="2024-03-05T00:00:00",
           procedure_type="flash", faceid_band="1e-5", state="approved"),
        _v("v7", verified=None, stored="2024-03-03T12:00:00", status="FAILED", procedure_type=None,
           liveness_result=None, faceid_band=None, flags="status_not_ok"),
    ]


def _add_decision(s: Session, biz_id: str, actor: str, outcome: str, at: str) -> None:
    v = s.exec(select(Verification).where(Verification.biz_id == biz_id)).one()
    s.add(Decision(verification_id=v.id, biz_id=biz_id, actor=actor, outcome=outcome,
                   decided_at=_at(at), based_on_version=1))


@pytest.fixture
def seven(engine: Engine) -> InsightsService:
    with Session(engine) as s:
        for v in _seven():
            s.add(v)
        s.flush()
        _add_decision(s, "v6", "alice", "approve", "2024-03-04T00:00:00")
        _add_decision(s, "v2", "bob", "escalate", "2024-03-02T00:00:00")
        _add_decision(s, "v2", "carol", "reject", "2024-03-05T00:00:00")
        s.commit()
    return InsightsService(engine)


# --------------------------------------------------------------------------- failed audit


def test_failure_summary_counts_each_reason(seven: InsightsService) -> None:
    summary = seven.failure_summary()
    assert (summary.total, summary.failed) == (7, 5)
    assert dict(zip(summary.by_reason["reason"], summary.by_reason["cases"], strict=True)) == {
        "status_not_ok": 2, "liveness_fail": 1, "verify_error": 1, "compare_below_1e-3": 1,
        "genuineness": 1, "face_replaced": 1, "id_attacked": 1, "multifaces": 1}
    assert list(summary.by_reason["reason"]) == list(FAILURE_REASONS)
    assert summary.failed_share == pytest.approx(5 / 7)


@pytest.mark.parametrize(("f", "total", "failed"), [
    (InsightFilter(procedure_type="video"), 2, 1),
    (InsightFilter(procedure_type=NO_PROCEDURE), 2, 2),
    (InsightFilter(reason="liveness_fail"), 1, 1),
    (InsightFilter(reason="status_not_ok", date_from=date(2024, 3, 3)), 1, 1),
    (InsightFilter(date_from=date(2024, 3, 3), date_to=date(2024, 3, 3)), 3, 2),
    (InsightFilter(date_to=date(2024, 3, 1)), 2, 1),
    (InsightFilter(decision_state="approved"), 1, 0),
    (InsightFilter(decision_state="escalated"), 1, 1),
])
def test_failure_summary_filters(seven: InsightsService, f: InsightFilter, total: int,
                                 failed: int) -> None:
    summary = seven.failure_summary(f)
    assert (summary.total, summary.failed) == (total, failed)


def test_invalid_filters_are_refused(seven: InsightsService) -> None:
    with pytest.raises(InsightsError):
        seven.failure_summary(InsightFilter(reason="bad luck"))
    with pytest.raises(InsightsError):
        seven.failure_summary(InsightFilter(date_from=date(2024, 3, 2), date_to=date(2024, 3, 1)))


def test_failures_by_day(seven: InsightsService) -> None:
    df = seven.failures_by_day()
    assert list(df["day"]) == list(pd.to_datetime(["2024-03-01", "2024-03-02", "2024-03-03"]))
    assert list(df["cases"]) == [2, 2, 3]
    assert list(df["failed"]) == [1, 2, 2]
    assert list(df["status_not_ok"]) == [0, 1, 1]
    assert list(df["multifaces"]) == [0, 0, 1]


def test_failure_details_name_the_values(seven: InsightsService) -> None:
    df = seven.failure_details()
    got = sorted(zip(df["reason"], df["value"], df["cases"], strict=True))
    assert got == [("genuineness", "mask", 1), ("status_not_ok", "FAILED", 1),
                   ("status_not_ok", "WEBRTC_UNSUPPORTED / NETWORK_ERROR", 1),
                   ("verify_error", "NO_SUCH_ID_NUMBER", 1)]


def test_failed_cases_paged_newest_first(seven: InsightsService) -> None:
    first = seven.failed_cases(page=1, page_size=2)
    assert (first.total, first.pages) == (5, 3)
    assert first.biz_ids == ["v7", "v5"]  # 03-03 12:00 (stored), 03-03 09:00 (verified)
    assert list(first.rows["biz_id"]) == first.biz_ids
    # parse_flags is a risk flag but not a failure reason
    assert first.rows["failure reasons"][1] == (
        "verify_error, genuineness, face_replaced, id_attacked, multifaces")
    assert seven.failed_cases(page=2, page_size=2).biz_ids == ["v4", "v3"]
    assert seven.failed_cases(page=99, page_size=2).biz_ids == ["v2"]  # clamped to the last
    only = seven.failed_cases(InsightFilter(reason="liveness_fail"))
    assert only.biz_ids == ["v2"] and only.total == 1
    assert "idcard_name" not in first.rows.columns


# --------------------------------------------------------------------------- metrics


def test_pass_rate_by_day_and_procedure(seven: InsightsService) -> None:
    df = seven.pass_rate()
    got = {(d.strftime("%m-%d"), p): (n, ok) for d, p, n, ok in
           zip(df["day"], df["procedure_type"], df["cases"], df["passed"], strict=True)}
    assert got == {("03-01", "still"): (1, 0), ("03-01", "video"): (1, 1),
                   ("03-02", NO_PROCEDURE): (1, 0), ("03-02", "video"): (1, 0),
                   ("03-03", NO_PROCEDURE): (1, 0), ("03-03", "flash"): (1, 1),
                   ("03-03", "selfie"): (1, 0)}
    assert set(df["pass_rate"]) == {0.0, 1.0}


def test_decisions_by_reviewer_counts_every_decision(seven: InsightsService) -> None:
    df = seven.decisions_by_reviewer()
    assert list(df.itertuples(index=False, name=None)) == [
        ("alice", "approve", 1), ("bob", "escalate", 1), ("carol", "reject", 1)]
    late = seven.decisions_by_reviewer(date_from=date(2024, 3, 4))
    assert list(late["reviewer"]) == ["alice", "carol"]


def test_decision_latency_percentiles(seven: InsightsService) -> None:
    stats = seven.decision_latency()
    # v2: 03-01 11:00 -> first decision 03-02 00:00 = 13 h; v6: 03-03 10:00 -> 03-04 = 14 h.
    assert stats.decided == 2
    assert stats.p50_s == pytest.approx(13 * 3600, abs=1)
    assert stats.p95_s == pytest.approx(14 * 3600, abs=1)
    assert list(stats.frame()["hours"]) == [13.0, 14.0]
    assert seven.decision_latency(InsightFilter(procedure_type="selfie")).decided == 0


def test_decision_latency_nearest_rank_over_twenty(engine: Engine) -> None:
    with Session(engine) as s:
        for i in range(1, 21):  # case i decided i hours after verification
            v = _v(f"c{i}", verified="2024-01-01T00:00:00", stored="2024-01-01T00:00:00")
            s.add(v)
            s.flush()
            s.add(Decision(verification_id=v.id, biz_id=v.biz_id, actor="a", outcome="approve",
                           decided_at=_at("2024-01-01T00:00:00") + timedelta(hours=i),
                           based_on_version=1))
        s.commit()
    stats = InsightsService(engine).decision_latency()
    assert (stats.decided, stats.p50_s, stats.p95_s) == (20, 10 * 3600, 19 * 3600)


def test_backlog_by_age_bucket(engine: Engine) -> None:
    now = _at("2024-06-01T12:00:00")
    ages = {"a": (timedelta(minutes=5), "pending"), "b": (timedelta(hours=1), "pending"),
            "c": (timedelta(hours=5), "escalated"), "d": (timedelta(days=2), "pending"),
            "e": (timedelta(days=8), "pending"), "f": (timedelta(days=8), "approved")}
    with Session(engine) as s:
        for biz_id, (age, state) in ages.items():
            s.add(_v(biz_id, verified=None, stored=(now - age).isoformat()[:19], state=state))
        s.commit()
    df = InsightsService(engine, clock=lambda: now).backlog()
    assert list(df["age"].astype(str).unique()) == [b for b, _ in AGE_BUCKETS]
    got = {(str(a), st): n for a, st, n in df.itertuples(index=False, name=None) if n}
    # exactly 1 h old is no longer "< 1 h"; approved cases are not backlog
    assert got == {("< 1 h", "pending"): 1, ("1-4 h", "pending"): 1,
                   ("4-24 h", "escalated"): 1, ("1-3 d", "pending"): 1,
                   ("> 7 d", "pending"): 1}
    assert int(df["cases"].sum()) == 5


def test_sql_reasons_agree_with_stored_risk_flags(engine: Engine, hash_key: bytes) -> None:
    """The audit's SQL conditions and summary.risk_flags must call the same cases failed."""
    for doc in generate_batch(60, seed=11):
        store.ingest(engine, json.dumps(doc).encode(), source="import", hash_key=hash_key)
    with Session(engine) as s:
        flags = [set((v.risk_flags or "").split(",")) for v in s.exec(select(Verification))]
    summary = InsightsService(engine).failure_summary()
    assert summary.total == 60
    assert summary.failed == sum(1 for f in flags if f & set(FAILURE_REASONS))
    for reason, cases in zip(summary.by_reason["reason"], summary.by_reason["cases"],
                             strict=True):
        assert cases == sum(1 for f in flags if reason in f), reason
    assert summary.failed > 5  # the batch really exercises the audit


# --------------------------------------------------------------------------- compare / linked


def _ingest(engine: Engine, hash_key: bytes, *docs: dict[str, Any]) -> None:
    for doc in docs:
        assert store.ingest(engine, json.dumps(doc).encode(), source="import",
                            hash_key=hash_key).created


def test_compare_side_by_side_with_differences(engine: Engine, hash_key: bytes) -> None:
    _ingest(engine, hash_key,
            person_doc(1, "1,a", "张三", "110101199003071234"),
            person_doc(2, "2,b", "张三", "110101199003071234", procedure="selfie"),
            person_doc(3, "3,c", "李四", "310105198501010028"))
    with Session(engine) as s:
        v = s.exec(select(Verification).where(Verification.biz_id == "2,b")).one()
        s.add(Decision(verification_id=v.id, biz_id=v.biz_id, actor="alice",
                       outcome="reject", reason="spoof_suspected",
                       decided_at=_at("2024-01-01T00:00:00"), based_on_version=1))
        s.commit()
    view = InsightsService(engine).compare(["1,a", "2,b", "3,c"])
    assert view.labels == ["Case 1", "Case 2", "Case 3"]
    assert view.biz_ids == ["1,a", "2,b", "3,c"]
    t = view.table.set_index(["section", "field"])
    assert list(t.loc[("case", "biz_id"), view.labels]) == view.biz_ids
    assert not t.loc[("case", "biz_id"), "differs"]
    assert list(t.loc[("case", "same ID number group"), view.labels]) == ["A", "A", "B"]
    assert t.loc[("case", "same ID number group"), "differs"]
    assert t.loc[("case", "procedure"), "Case 2"] == "selfie"
    assert t.loc[("case", "procedure"), "differs"]
    assert not t.loc[("case", "status"), "differs"]  # all OK
    assert t.loc[("decision", "latest outcome"), "Case 2"] == "reject"
    assert list(t.loc[("decision", "decisions made"), view.labels]) == ["0", "1", "0"]
    sections = set(view.table["section"])
    assert {"liveness details", "genuineness", "face compare", "decision"} <= sections
    # a selfie counter absent from the video cases shows as "—" for them
    selfie_rows = view.table[view.table["field"].str.startswith("front selfie")]
    assert len(selfie_rows) and set(selfie_rows["Case 1"]) == {"—"}
    genuine = view.table[view.table["section"] == "genuineness"]
    assert genuine["Case 1"].str.contains("vs threshold 0.500").any()
    everything = view.table.to_string()
    for clear in ("张三", "李四", "110101199003071234"):
        assert clear not in everything
    for biz_id, frame in view.frames.items():  # OK + PASS cases carry images
        assert frame is None or frame.startswith(b"\xff\xd8\xff"), biz_id
    assert any(view.frames.values())


@pytest.mark.parametrize("ids", [["1,a"], ["1,a", "1,a"], ["a", "b", "c", "d", "e"]])
def test_compare_needs_two_to_four_cases(engine: Engine, ids: list[str]) -> None:
    with pytest.raises(InsightsError):
        InsightsService(engine).compare(ids)


def test_compare_unknown_case(engine: Engine, hash_key: bytes) -> None:
    _ingest(engine, hash_key, person_doc(1, "1,a", "张三", "110101199003071234"))
    with pytest.raises(InsightsError, match="not stored"):
        InsightsService(engine).compare(["1,a", "nope"])


def test_linked_cases_flag_same_id_number_under_another_name(engine: Engine,
                                                            hash_key: bytes) -> None:
    _ingest(engine, hash_key,
            person_doc(1, "1,me", "张三", "110101199003071234", biz_no="order-7"),
            person_doc(2, "2,alias", "李四", "110101199003071234"),
            person_doc(3, "3,again", " 张 三", "110101199003071234"),
            person_doc(4, "4,same-order", "王五", "440101199001011234", biz_no="order-7"),
            person_doc(5, "5,stranger", "赵六", "510101199001011234"))
    linked = InsightsService(engine).linked_cases("1,me")
    rows = {r["biz_id"]: r for r in linked.rows.to_dict("records")}
    assert set(rows) == {"2,alias", "3,again", "4,same-order"}
    assert rows["2,alias"]["link"] == "same ID number"
    assert rows["2,alias"]["different name"] is True
    assert rows["3,again"]["different name"] is False  # spacing is not another name
    assert rows["4,same-order"]["link"] == "same biz_no"
    assert rows["4,same-order"]["different name"] is False  # another number, not an alias
    assert linked.other_name_count == 1 and not linked.truncated
    assert rows["2,alias"]["name (masked)"] == "李*"
    assert "李四" not in linked.rows.to_string()
    assert InsightsService(engine).linked_cases("5,stranger").rows.empty
    with pytest.raises(InsightsError):
        InsightsService(engine).linked_cases("missing")


def test_linked_cases_counts_and_compare_choice(engine: Engine, hash_key: bytes) -> None:
    _ingest(engine, hash_key,
            person_doc(1, "1,me", "张三", "110101199003071234", biz_no="order-7"),
            *(person_doc(10 + i, f"{i},again", "张三", "110101199003071234")
              for i in range(2, 6)),
            person_doc(6, "6,same-order", "王五", "440101199001011234", biz_no="order-7"))
    linked = InsightsService(engine).linked_cases("1,me")
    assert (linked.count, linked.same_id_count, linked.same_biz_no_count) == (5, 4, 1)
    assert linked.other_name_count == 0 and linked.other_names == ()
    # "All attempts": the chosen case and the three most recent others, and there are more.
    assert linked.compare_ids() == ["1,me", *linked.biz_ids[:3]] and linked.more_than()


def _options_seed(engine: Engine, hash_key: bytes) -> list[str]:
    ids = ["1758000001,a", "1758000002,b", "1759000003,c", "x%_,d"]
    _ingest(engine, hash_key,
            *(person_doc(i, b, "张三", f"11010119900307{i:04d}", biz_no=f"order-{i}")
              for i, b in enumerate(ids)))
    return ids


def test_case_options_newest_first_and_paged(engine: Engine, hash_key: bytes) -> None:
    ids = _options_seed(engine, hash_key)
    svc = InsightsService(engine)
    opts = svc.case_options()
    assert opts.total == 4 and opts.biz_ids == ids[::-1]  # most recently stored first
    assert opts.labels["1758000001,a"].startswith("1758000001,a · ")
    assert opts.labels["1758000001,a"].endswith(" UTC · OK")
    first, second = svc.case_options(page_size=3), svc.case_options(page=2, page_size=3)
    assert (first.pages, first.biz_ids, second.biz_ids) == (2, ids[:0:-1], ids[:1])
    assert svc.case_options(page=99, page_size=3).page == 2  # clamped to the last page


@pytest.mark.parametrize(("search", "expected"), [
    ("1758", ["1758000002,b", "1758000001,a"]),  # biz_id prefix
    ("1758000001,a", ["1758000001,a"]),
    ("order-3", ["x%_,d"]),  # biz_no
    ("ORDER-3", ["x%_,d"]),  # any letter case
    (",A", ["1758000001,a"]),
    ("x%_", ["x%_,d"]),  # LIKE wildcards are literal
    ("%", ["x%_,d"]),
    ("_", ["x%_,d"]),
    ("758000", ["1758000002,b", "1758000001,a"]),  # anywhere, not only at the start
    ("  1759  ", ["1759000003,c"]),
    ("nothing like it", []),
])
def test_case_options_search_anywhere_any_case(engine: Engine, hash_key: bytes, search: str,
                                               expected: list[str]) -> None:
    """The picker finds what the queue's search finds (faceid.review.search)."""
    _options_seed(engine, hash_key)
    opts = InsightsService(engine).case_options(search)
    assert (opts.biz_ids, opts.total) == (expected, len(expected))


def test_case_options_search_pages_and_clamps(engine: Engine, hash_key: bytes) -> None:
    _options_seed(engine, hash_key)
    svc = InsightsService(engine)
    first, second = svc.case_options("1758", page_size=1), svc.case_options("1758", 2, 1)
    assert (first.total, first.pages, first.biz_ids) == (2, 2, ["1758000002,b"])
    assert (second.page, second.biz_ids) == (2, ["1758000001,a"])
    beyond = svc.case_options("1758", 9, 1)  # clamped to the last page
    assert (beyond.page, beyond.total, beyond.biz_ids) == (2, 2, ["1758000001,a"])
    none = svc.case_options("absent", 3, 1)
    assert (none.total, none.page, none.biz_ids) == (0, 1, [])


def test_case_options_keep_what_is_picked(engine: Engine, hash_key: bytes) -> None:
    _options_seed(engine, hash_key)
    opts = InsightsService(engine).case_options("1759", keep=["1758000001,a", "nope,1"])
    assert opts.biz_ids == ["1758000001,a", "nope,1", "1759000003,c"]
    assert opts.labels["nope,1"] == "nope,1 · not stored"
    assert opts.labels["1758000001,a"].endswith(" · OK") and opts.total == 1


def test_export_facade_uses_the_governed_export(engine: Engine, hash_key: bytes) -> None:
    _ingest(engine, hash_key, person_doc(1, "1,a", "张三", "110101199003071234"))
    service = InsightsService(engine)
    data = service.export_bytes(None, Actor("x", "X", "auditor"))
    assert data.startswith(b"\xef\xbb\xbf") and "张*".encode() in data
    assert not service.may_export_unmasked(Actor("x", "X", "senior"))
    with pytest.raises(export.ExportRefused):
        service.export_bytes(None, Actor("x", "X", "senior"), unmasked=True)
