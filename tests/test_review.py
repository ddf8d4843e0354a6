"""ReviewService: queue (SQL filters, sorting, paging), case assembly, claims, decisions,
stale views, append-only history, timeline, masking and the concurrency promise."""

from __future__ import annotations

import copy
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from faceid.access import pii
from faceid.access.actors import DEMO_ACTORS, Actor, demo_actor
from faceid.api.simulator import generate_batch, generate_result
from faceid.core.config import Settings
from faceid.core.errors import APIError, InvalidDecision, ResultNotFound
from faceid.core.timeutil import as_utc, utcnow
from faceid.review.decisions import REASONS, validate_decision
from faceid.review.queue import UNASSIGNED, QueueFilter
from faceid.review.rules import CLAIM_TIMEOUT, REVEAL_WINDOW
from faceid.review.service import ClaimConflict, NotAllowed, NotClaimed, ReviewService, StaleCase
from faceid.store import write as store
from faceid.store.tables import Decision, Verification
from tests.fakes import FakeFetcher, FakeQuota, person_doc

HASH_KEY = b"test-pii-key"
REVIEWER = demo_actor("demo.reviewer")
REVIEWER2 = demo_actor("demo.reviewer2")
SENIOR = demo_actor("demo.senior")
AUDITOR = demo_actor("demo.auditor")
NOW = datetime(2025, 10, 10, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


_DOCS: list[dict[str, Any]] = []


def sample_docs() -> list[dict[str, Any]]:
    """40 generated cases (every status/procedure mix) plus one hostile; generated once."""
    if not _DOCS:
        _DOCS.extend(generate_batch(40, seed=11))
        _DOCS.append(generate_result(5, hostile=True))
    return _DOCS


def seed(engine: Engine, docs: list[dict[str, Any]] | None = None) -> list[str]:
    out = []
    for d in docs if docs is not None else sample_docs():
        r = store.ingest(engine, json.dumps(d).encode(), source="import", hash_key=HASH_KEY)
        assert r.error is None, r.error
        out.append(r.biz_id)
    return out


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def svc(engine: Engine, clock: Clock) -> ReviewService:
    seed(engine)
    return ReviewService(engine, FakeFetcher(engine, hash_key=HASH_KEY), Settings(), clock=clock)


def all_rows(engine: Engine) -> list[Verification]:
    with Session(engine) as s:
        return list(s.exec(select(Verification)).all())


def case_time(v: Verification) -> datetime:
    return as_utc(v.verified_at or v.stored_at)


def version(engine: Engine, biz_id: str) -> int:
    with Session(engine) as s:
        return s.exec(select(Verification.version)
                      .where(Verification.biz_id == biz_id)).one()


def everything(svc: ReviewService, f: QueueFilter, sort: str = "oldest",
               actor: Actor = REVIEWER) -> list[str]:
    out: list[str] = []
    page = 1
    while True:
        p = svc.queue(f, sort, page, 7, actor=actor)
        out += p.biz_ids
        if page >= p.pages:
            assert len(out) == p.total
            return out
        page += 1


# --------------------------------------------------------------------------- queue


FILTER_CASES = [
    (QueueFilter(statuses=("OK",)), lambda v: v.status == "OK"),
    (QueueFilter(statuses=("CANCELLED", "TIMEOUT")),
     lambda v: v.status in ("CANCELLED", "TIMEOUT")),
    (QueueFilter(procedure_types=("selfie", "still")),
     lambda v: v.procedure_type in ("selfie", "still")),
    (QueueFilter(liveness=("FAIL",)), lambda v: v.liveness_result == "FAIL"),
    (QueueFilter(liveness=("none",)), lambda v: v.liveness_result is None),
    (QueueFilter(liveness=("PASS", "none")), lambda v: v.liveness_result in ("PASS", None)),
    (QueueFilter(bands=("1e-6",)), lambda v: v.faceid_band == "1e-6"),
    (QueueFilter(bands=("below",)), lambda v: v.faceid_band == "none"),
    (QueueFilter(bands=("none", "1e-3")), lambda v: v.faceid_band in (None, "1e-3")),
    (QueueFilter(risk_flags=("liveness_fail",)),
     lambda v: "liveness_fail" in v.risk_flags.split(",")),
    (QueueFilter(risk_flags=("multifaces", "id_attacked")),
     lambda v: bool({"multifaces", "id_attacked"} & set(v.risk_flags.split(",")))),
    (QueueFilter(statuses=("OK",), liveness=("PASS",), bands=("below",)),
     lambda v: v.status == "OK" and v.liveness_result == "PASS" and v.faceid_band == "none"),
    (QueueFilter(decision_states=("pending",)), lambda v: v.decision_state == "pending"),
    (QueueFilter(assignee=UNASSIGNED), lambda v: v.assignee is None),
]


def test_queue_filters_agree_with_python(svc: ReviewService, engine: Engine) -> None:
    # One seeded database for every filter (seeding dominates the cost on PostgreSQL).
    rows = all_rows(engine)
    for f, pred in FILTER_CASES:
        expected = sorted((v for v in rows if pred(v)), key=lambda v: (case_time(v), v.id))
        assert everything(svc, f) == [v.biz_id for v in expected], f


def test_sample_covers_the_filters(engine: Engine) -> None:
    # Guard the test above against vacuous passes: the seed has every kind of case.
    seed(engine)
    rows = all_rows(engine)
    assert {v.liveness_result for v in rows} >= {"PASS", "FAIL", None}
    assert {v.faceid_band for v in rows} >= {"none", None, "1e-3", "1e-6"}
    assert {"liveness_fail", "multifaces"} <= {f for v in rows for f in v.risk_flags.split(",")}
    assert len({v.status for v in rows}) >= 4


def test_sorting_and_stable_paging(svc: ReviewService, engine: Engine) -> None:
    rows = {v.biz_id: v for v in all_rows(engine)}
    oldest = everything(svc, QueueFilter(), "oldest")
    assert len(oldest) == len(rows) == len(set(oldest))
    times = [case_time(rows[b]) for b in oldest]
    assert times == sorted(times)
    assert everything(svc, QueueFilter(), "newest") == oldest[::-1]
    risk = [rows[b].risk_count for b in everything(svc, QueueFilter(), "risk")]
    assert risk == sorted(risk, reverse=True)
    scores = [rows[b].faceid_confidence for b in everything(svc, QueueFilter(), "score")]
    present = [s for s in scores if s is not None]
    assert present == sorted(present) and scores[len(present):] == [None] * (
        len(scores) - len(present))
    assert everything(svc, QueueFilter(), "biz_id") == sorted(rows)


def test_page_is_clamped_and_counted(svc: ReviewService) -> None:
    p = svc.queue(QueueFilter(), "oldest", page=99, page_size=10, actor=REVIEWER)
    assert p.page == p.pages == 5 and p.total == 41 and len(p.rows) == 1
    assert list(p.rows["biz_id"]) == p.biz_ids
    empty = svc.queue(QueueFilter(search="no-such-thing"), "oldest", 1, 10, actor=REVIEWER)
    assert empty.total == 0 and empty.rows.empty and list(empty.rows.columns)


def test_search_and_masked_names(svc: ReviewService, engine: Engine) -> None:
    v = next(r for r in all_rows(engine) if r.idcard_name and r.biz_no)
    assert svc.queue(QueueFilter(search=v.biz_no[3:12]), actor=REVIEWER).biz_ids == [v.biz_id]
    assert v.biz_id in svc.queue(QueueFilter(search=v.biz_id[:8]), actor=REVIEWER).biz_ids
    # LIKE wildcards are literal: "%" and "_" match nothing here.
    assert svc.queue(QueueFilter(search="%"), actor=REVIEWER).total == 0
    assert svc.queue(QueueFilter(search="_"), actor=REVIEWER).total == 0
    # Name search only for roles that may reveal names (else it is an oracle).
    assert v.biz_id in svc.queue(QueueFilter(search=v.idcard_name), actor=REVIEWER).biz_ids
    assert v.biz_id not in svc.queue(QueueFilter(search=v.idcard_name), actor=AUDITOR).biz_ids
    rows = svc.queue(QueueFilter(), page_size=200, actor=SENIOR).rows
    shown = dict(zip(rows["biz_id"], rows["name"], strict=True))
    assert shown[v.biz_id] == pii.mask_name(v.idcard_name) != v.idcard_name


def test_age_column_and_filter(svc: ReviewService, engine: Engine, clock: Clock) -> None:
    rows = all_rows(engine)
    newest = max(case_time(v) for v in rows)
    clock.now = newest + timedelta(hours=5)
    young = svc.queue(QueueFilter(max_age_hours=6), page_size=200, actor=REVIEWER)
    assert young.total >= 1 and all(case_time(v) >= clock.now - timedelta(hours=6)
                                    for v in rows if v.biz_id in young.biz_ids)
    assert young.rows.iloc[-1]["age"] == "5h" or "5h" in set(young.rows["age"])
    old = svc.queue(QueueFilter(min_age_hours=24 * 10), page_size=200, actor=REVIEWER)
    assert old.total == sum(1 for v in rows if clock.now - case_time(v) >= timedelta(days=10))


def test_counts_follow_the_workflow(svc: ReviewService, engine: Engine, clock: Clock) -> None:
    c = svc.counts(REVIEWER)
    assert c == {"pending": 41, "unclaimed": 41, "claimed": 0, "escalated": 0,
                 "decided_today": 0, "total": 41}
    a, b = svc.queue(QueueFilter(), page_size=2, actor=REVIEWER).biz_ids
    svc.claim(a, REVIEWER, 1)
    svc.claim(b, REVIEWER2, 1)
    svc.decide(b, REVIEWER2, "escalate", "spoof_suspected", "looks like a mask", 2)
    c = svc.counts(REVIEWER)
    assert (c["pending"], c["unclaimed"], c["claimed"], c["escalated"], c["decided_today"]) == (
        40, 39, 1, 1, 1)


# --------------------------------------------------------------------------- claims


def test_claim_rules(svc: ReviewService, engine: Engine, clock: Clock) -> None:
    biz = svc.queue(QueueFilter(), actor=REVIEWER).biz_ids[0]
    with pytest.raises(NotAllowed):
        svc.claim(biz, AUDITOR, 1)
    r = svc.claim(biz, REVIEWER, 1)
    assert (r.version, r.assignee) == (2, REVIEWER.username)
    assert svc.claim(biz, REVIEWER, 2).version == 2  # a double click changes nothing
    with pytest.raises(ClaimConflict, match="Claimed by demo.reviewer"):
        svc.claim(biz, REVIEWER2, 2)
    with pytest.raises(StaleCase):
        svc.claim(biz, REVIEWER2, 1)
    with pytest.raises(NotAllowed):
        svc.release(biz, REVIEWER2, 2)
    # A senior may break someone else's claim; it is audited as such.
    assert svc.release(biz, SENIOR, 2).version == 3
    svc.claim(biz, REVIEWER2, 3)
    # An abandoned claim can be taken over after CLAIM_TIMEOUT.
    clock.now += CLAIM_TIMEOUT + timedelta(minutes=1)
    assert svc.claim(biz, REVIEWER, 4).assignee == REVIEWER.username
    view = svc.open_case(biz, REVIEWER2, record_view=False)
    assert view is not None and not view.can_decide.allowed
    with Session(engine) as s:
        details = [json.loads(e.detail) for e in
                   svc_timeline(s, biz) if e.action in ("release", "claim")]
    assert {"released_claim_of": REVIEWER.username, "version": 3} in details
    assert details[-1]["took_over_expired_claim_of"] == REVIEWER2.username


def svc_timeline(s: Session, biz_id: str):
    from faceid.store import audit

    return audit.timeline(s, biz_id)


# --------------------------------------------------------------------------- decisions


@pytest.mark.parametrize(("outcome", "reason", "note", "match"), [
    ("reject", None, "why", "needs a reason"),
    ("reject", "face_mismatch", "  ", "needs a note"),
    ("escalate", "", "why", "needs a reason"),
    ("escalate", "spoof_suspected", None, "needs a note"),
    ("maybe", None, None, "Unknown outcome"),
    ("approve", "not_a_reason", None, "Unknown reason"),
    ("approve", None, "x" * 4001, "too long"),
])
def test_decision_validation(outcome, reason, note, match) -> None:
    with pytest.raises(InvalidDecision, match=match):
        validate_decision(outcome, reason, note)


def test_invalid_decision_writes_nothing(svc: ReviewService, engine: Engine) -> None:
    biz = svc.queue(QueueFilter(), actor=REVIEWER).biz_ids[0]
    svc.claim(biz, REVIEWER, 1)
    with pytest.raises(InvalidDecision, match="needs a note"):
        svc.decide(biz, REVIEWER, "reject", "face_mismatch", "", 2)
    assert version(engine, biz) == 2
    assert validate_decision("approve", "", "  ") == ("approve", None, None)


def test_reason_catalogue() -> None:
    assert set(REASONS) == {"face_mismatch", "spoof_suspected", "document_tampered",
                            "id_data_mismatch", "poor_quality", "duplicate_identity", "other"}
    assert all(REASONS.values())


def test_deciding_requires_the_claim(svc: ReviewService) -> None:
    biz = svc.queue(QueueFilter(), actor=REVIEWER).biz_ids[0]
    with pytest.raises(NotClaimed, match="Claim the case"):
        svc.decide(biz, REVIEWER, "approve", None, None, 1)
    svc.claim(biz, REVIEWER2, 1)
    with pytest.raises(NotClaimed, match="demo.reviewer2 holds"):
        svc.decide(biz, REVIEWER, "approve", None, None, 2)
    with pytest.raises(NotAllowed):
        svc.decide(biz, AUDITOR, "approve", None, None, 2)


def test_stale_view_is_refused(svc: ReviewService, engine: Engine) -> None:
    biz = svc.queue(QueueFilter(), actor=REVIEWER).biz_ids[0]
    svc.claim(biz, REVIEWER, 1)
    seen = svc.open_case(biz, REVIEWER, record_view=False)
    assert seen is not None and seen.version == 2
    # Someone (a senior, here) changes the case after the reviewer opened it...
    svc.release(biz, SENIOR, 2)
    svc.claim(biz, REVIEWER, 3)
    # ...so a decision made on the old view is refused, and nothing is written.
    with pytest.raises(StaleCase, match="changed after you opened it") as info:
        svc.decide(biz, REVIEWER, "approve", None, None, seen.version)
    assert "Nothing was saved" in str(info.value)
    with Session(engine) as s:
        assert s.exec(select(Decision)).all() == []
    assert svc.decide(biz, REVIEWER, "approve", None, None, 4).state == "approved"


def test_decisions_are_append_only_and_state_is_the_latest(svc: ReviewService,
                                                           engine: Engine) -> None:
    biz = svc.queue(QueueFilter(), actor=REVIEWER).biz_ids[0]
    svc.claim(biz, REVIEWER, 1)
    r = svc.decide(biz, REVIEWER, "reject", "face_mismatch", "different person", 2)
    assert (r.state, r.version, r.assignee) == ("rejected", 3, None)
    # Without second review of rejects a reject is final, for seniors too.
    for actor in (REVIEWER, SENIOR):
        with pytest.raises(NotAllowed, match="already decided"):
            svc.claim(biz, actor, 3)
    # With it (FACEID_SECOND_REVIEW_REJECTS=1), a senior second-reviews the reject, and the
    # history keeps both decisions.
    svc.second_review_rejects = True
    with pytest.raises(NotAllowed, match="senior"):
        svc.claim(biz, REVIEWER2, 3)
    svc.claim(biz, SENIOR, 3)
    svc.decide(biz, SENIOR, "approve", None, "same person, bad light", 4)
    view = svc.open_case(biz, SENIOR, record_view=False)
    assert view is not None and view.decision_state == "approved"
    assert list(view.decisions["outcome"]) == ["reject", "approve"]
    assert list(view.decisions["on version"]) == [2, 4]
    with pytest.raises(NotAllowed, match="already decided"):  # the second review is final
        svc.claim(biz, demo_actor("demo.admin"), 5)
    assert view.decisions.iloc[0]["reason"] == REASONS["face_mismatch"]
    with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
        conn.execute(text("UPDATE decisions SET outcome = 'approve'"))
    with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM decisions"))


def test_escalation_goes_to_a_senior(svc: ReviewService) -> None:
    biz = svc.next_case(REVIEWER)
    assert biz is not None
    svc.claim(biz, REVIEWER, 1)
    svc.decide(biz, REVIEWER, "escalate", "document_tampered", "edges look edited", 2)
    with pytest.raises(NotAllowed, match="escalated"):
        svc.claim(biz, REVIEWER2, 3)
    assert svc.next_case(REVIEWER) != biz
    assert svc.next_case(SENIOR) == biz  # seniors get escalated cases first
    svc.claim(biz, SENIOR, 3)
    assert svc.decide(biz, SENIOR, "approve", None, None, 4).state == "approved"


def test_four_eyes_never_second_review_of_ones_own_decision(svc: ReviewService) -> None:
    admin = demo_actor("demo.admin")
    svc.second_review_rejects = True
    esc, rej = svc.queue(QueueFilter(), page_size=2, actor=SENIOR).biz_ids
    # The senior makes the first decision on both cases (seniors also review pending work).
    svc.claim(esc, SENIOR, 1)
    svc.decide(esc, SENIOR, "escalate", "spoof_suspected", "mask?", 2)
    svc.claim(rej, SENIOR, 1)
    svc.decide(rej, SENIOR, "reject", "face_mismatch", "other person", 2)
    for biz in (esc, rej):
        view = svc.open_case(biz, SENIOR, record_view=False)
        assert view is not None and view.awaiting_second_review
        assert not view.can_claim.allowed and "someone else" in str(view.can_claim.why_not)
        with pytest.raises(NotAllowed, match="four eyes"):
            svc.claim(biz, SENIOR, 3)
    # The senior's own decisions are not handed back to them as "next case".
    nxt = svc.next_case(SENIOR)
    assert nxt not in (esc, rej)
    # Another senior-level person does the second review; seniors' queue puts it first.
    assert svc.next_case(admin) == esc
    svc.claim(esc, admin, 3)
    r = svc.decide(esc, admin, "reject", "spoof_suspected", "confirmed", 4)
    assert r.state == "rejected"
    view = svc.open_case(esc, admin, record_view=False)
    # A reject made in the second review is final: it does not wait for a third pair of eyes.
    assert view is not None and not view.awaiting_second_review
    assert svc.next_case(admin) == rej
    assert json.loads(view.timeline.iloc[-1]["detail"])["second_review_of"] == SENIOR.username


def test_next_case_is_the_oldest_unclaimed_pending(svc: ReviewService, clock: Clock) -> None:
    order = svc.queue(QueueFilter(decision_states=("pending",)), "oldest", 1, 3,
                      actor=REVIEWER).biz_ids
    assert svc.next_case(REVIEWER) == order[0]
    svc.claim(order[0], REVIEWER2, 1)
    assert svc.next_case(REVIEWER) == order[1]
    svc.claim(order[1], REVIEWER, 1)
    svc.decide(order[1], REVIEWER, "approve", None, None, 2)
    assert svc.next_case(REVIEWER) == order[2]
    with pytest.raises(NotAllowed):  # read-only: no work is handed out
        svc.next_case(AUDITOR)
    clock.now += CLAIM_TIMEOUT + timedelta(hours=1)  # reviewer2 walked away
    assert svc.next_case(REVIEWER) == order[0]


def test_notes_and_timeline(svc: ReviewService, clock: Clock) -> None:
    biz = svc.next_case(REVIEWER)
    assert biz is not None
    svc.open_case(biz, REVIEWER)
    with pytest.raises(NotAllowed):  # the auditor is read-only
        svc.add_note(biz, AUDITOR, "checked by audit")
    svc.add_note(biz, REVIEWER2, "checked by a colleague")
    svc.claim(biz, REVIEWER, 1)
    svc.decide(biz, REVIEWER, "approve", None, "fine", 2)
    svc.reveal_pii(biz, REVIEWER)
    with pytest.raises(InvalidDecision):
        svc.add_note(biz, REVIEWER, "   ")
    view = svc.open_case(biz, REVIEWER, record_view=False)
    assert view is not None
    tl = view.timeline
    assert list(tl["action"]) == ["imported", "view", "note", "claim", "decide", "reveal_pii"]
    assert list(tl["actor"]) == ["system", "demo.reviewer", "demo.reviewer2", "demo.reviewer",
                                 "demo.reviewer", "demo.reviewer"]
    assert all(t.endswith(" UTC") for t in tl["time (UTC)"])
    assert list(view.notes["note"]) == ["checked by a colleague"]
    decide = json.loads(tl.iloc[4]["detail"])
    assert decide["outcome"] == "approve" and decide["note_chars"] == 4
    assert "fine" not in tl.iloc[4]["detail"]  # the note text stays in the decision row


# --------------------------------------------------------------------------- one case


def _pii_doc() -> dict[str, Any]:
    # A case with a full ID card (both sides) and images.
    for d in sample_docs():
        info = d.get("idcard_info") or {}
        if (d.get("status") == "OK" and info.get("back_side") and info.get("idcard_name")
                and d.get("images")):
            return d
    raise AssertionError("no suitable sample")


def test_masking_by_default_and_audited_reveal(svc: ReviewService, engine: Engine,
                                                clock: Clock) -> None:
    clock.now = utcnow()  # the reveal is timed by its audit event, written at real time
    doc = _pii_doc()
    biz = doc["biz_info"]["biz_id"]
    name = doc["idcard_info"]["idcard_name"]
    number = doc["idcard_info"]["idcard_number"]
    address = doc["idcard_info"]["front_side"]["ocr_result"]["address"]
    view = svc.open_case(biz, REVIEWER)
    assert view is not None and not view.pii_revealed and view.can_reveal
    blob = json.dumps(view.raw, ensure_ascii=False) + view.confirmed.to_json(
        force_ascii=False) + view.ocr["front"].to_json(force_ascii=False)
    for secret in (name, number, address):
        assert secret not in blob
    assert pii.mask_id_number(number) in blob
    # Asking for reveal without the audited action shows nothing more.
    assert not svc.open_case(biz, REVIEWER, record_view=False, reveal=True).pii_revealed
    with pytest.raises(NotAllowed):
        svc.reveal_pii(biz, AUDITOR)
    shown = svc.reveal_pii(biz, REVIEWER)
    assert shown.pii_revealed and shown.reveal_until
    assert shown.raw["idcard_info"]["idcard_name"] == name
    assert name in set(shown.confirmed["confirmed"])
    # Another reviewer's view stays masked; the window ends.
    assert not svc.open_case(biz, REVIEWER2, record_view=False, reveal=True).pii_revealed
    clock.now += REVEAL_WINDOW + timedelta(seconds=1)
    assert not svc.open_case(biz, REVIEWER, record_view=False, reveal=True).pii_revealed


def test_pii_masks() -> None:
    assert pii.mask_id_number("110101199003071234") == "110*************34"
    assert pii.mask_id_number("12345") == "*****"
    assert pii.mask_name("张三") == "张*"
    assert pii.mask_name("欧阳娜娜") == "欧***"
    assert pii.mask_address("北京市海淀区中关村大街1号") == "北京市海淀区******"
    assert pii.mask_birthday("1991-06-02") == "1991-**-**"
    assert [pii.can_reveal(a.role) for a in DEMO_ACTORS] == [True, True, True, False, True]
    assert pii.mask_field("gender", "男") == "男"


def test_open_case_assembles_everything(svc: ReviewService) -> None:
    doc = _pii_doc()
    view = svc.open_case(doc["biz_info"]["biz_id"], REVIEWER)
    assert view is not None
    assert view.status == "OK" and "does NOT mean" in view.status_meaning
    assert view.verified_at.endswith("UTC") and view.has_results
    ok = [i for i in view.images if i.state == "ok"]
    assert ok and all(i.data and i.data[:3] == b"\xff\xd8\xff" for i in ok)
    assert {"front", "back"} <= set(view.ocr) and {"front", "back"} <= set(view.legality)
    assert set(view.ocr["front"].columns) == {"field", "value", "quality", "logic", "check"}
    assert "Temporary ID Photo " in set(view.legality["front"]["check"])
    assert set(view.confirmed["field"]) >= {"Name", "ID number"}
    assert view.uploads["front"] is not None
    live = view.liveness
    assert live is not None and live.procedure_meaning and not live.counters.empty
    assert live.counters["meaning"].map(bool).all()
    faceid = view.comparisons[view.comparisons["comparison"] == "result_faceid"].iloc[0]
    assert faceid["band"].startswith(("passes", "fails")) and faceid["risk level"]
    assert view.version == 1 and view.assignee is None and view.timeline.shape[0] == 2
    assert "sha256:" in json.dumps(view.raw["images"])


def test_broken_missing_and_resultless_cases(engine: Engine) -> None:
    doc = copy.deepcopy(_pii_doc())
    doc["biz_info"]["biz_id"] = "1760000000,broken-images"
    doc["images"]["image_idcard_back"] = "data:image/jpeg;base64,!!!not-base64!!!"
    del doc["images"]["image_idcard_front"]
    doc["verify_result"]["error_message"] = "NO_FACE_FOUND"
    empty = generate_result(3, biz_id="1760000000,not-started", status="NOT_STARTED")
    seed(engine, [doc, empty])
    svc = ReviewService(engine, None, Settings())
    view = svc.open_case("1760000000,broken-images", REVIEWER)
    assert view is not None
    states = {i.kind: (i.state, i.data is None) for i in view.images}
    assert states["idcard_back"] == ("error", True)
    assert states["idcard_front"] == ("missing", True)
    assert view.verify_error == "NO_FACE_FOUND" and "No face" in view.verify_error_meaning
    nothing = svc.open_case("1760000000,not-started", REVIEWER)
    assert nothing is not None and not nothing.has_results and nothing.images == []
    assert svc.open_case("no-such-biz", REVIEWER) is None


def test_hostile_strings_pass_through_as_data(svc: ReviewService) -> None:
    doc = sample_docs()[-1]
    view = svc.reveal_pii(doc["biz_info"]["biz_id"], REVIEWER)
    values = set(view.ocr["front"]["value"])
    assert any("[click](http://evil)" in str(v) for v in values)
    assert view.biz_extra_data == doc["biz_info"]["biz_extra_data"]


# --------------------------------------------------------------------------- lookup / fetch


def test_lookup_store_first_then_quota(svc: ReviewService) -> None:
    stored = svc.queue(QueueFilter(), actor=REVIEWER).biz_ids[0]
    assert svc.lookup(f"  {stored} ", REVIEWER).stored
    v = svc.lookup("1760000000,not-here", REVIEWER)
    assert not v.stored and v.reads_left == 2 and v.can_fetch
    assert v.deadline == "2025-10-11 08:00:00 UTC"
    with pytest.raises(Exception, match="Enter a biz_id"):
        svc.lookup("  ", REVIEWER)
    # The window closed: the ledger may count 2 unused reads, but none is left to spend.
    svc.fetcher.quota = FakeQuota(2, datetime(2025, 10, 9, tzinfo=UTC), False)
    closed = svc.lookup("1760000000,not-here", REVIEWER)
    assert (closed.reads_left, closed.can_fetch) == (0, False)


def test_fetch_delegates_and_speaks_plainly(engine: Engine) -> None:
    seed(engine, [])
    svc = ReviewService(engine, FakeFetcher(engine, hash_key=HASH_KEY), Settings())
    out = svc.fetch("1760000000,fresh", REVIEWER)
    assert out.ok and out.stored and out.message == "Fetched and stored."
    assert svc.lookup("1760000000,fresh", REVIEWER).stored
    with pytest.raises(NotAllowed):
        svc.fetch("1760000000,x", AUDITOR)
    for exc, expect in [(ResultNotFound(http_status=400), "no result for this biz_id"),
                        (APIError("x"), "FaceID refused")]:
        svc = ReviewService(engine, FakeFetcher(engine, exc, hash_key=HASH_KEY), Settings())
        out = svc.fetch("1760000000,y", REVIEWER)
        assert not out.ok and not out.stored and expect in out.message
    leaky = RuntimeError("GET https://api?api_key=k&api_secret=TOPSECRET failed")
    svc = ReviewService(engine, FakeFetcher(engine, leaky, hash_key=HASH_KEY), Settings())
    out = svc.fetch("1,z", REVIEWER)
    assert "TOPSECRET" not in out.message and "RuntimeError" in out.message


# --------------------------------------------------------------------------- concurrency


def _race(n: int, fn) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_concurrent_claims_and_decisions_have_one_winner(mt_engine: Engine) -> None:
    bizs = seed(mt_engine, sample_docs()[:4])
    svc = ReviewService(mt_engine, None, Settings())
    for biz in bizs:
        # Two reviewers claim the same case from the same view: one claim, one refusal.
        claims = _race(2, lambda i, b=biz: svc.claim(b, (REVIEWER, REVIEWER2)[i], 1))
        winners = [r for r in claims if not isinstance(r, Exception)]
        assert len(winners) == 1, claims
        assert all(isinstance(r, (StaleCase, ClaimConflict)) for r in claims
                   if isinstance(r, Exception)), claims
        holder = next(a for a in (REVIEWER, REVIEWER2) if a.username == winners[0].assignee)
        # The holder decides twice at once (two tabs, different outcomes): one decision.
        outcomes = ("approve", "reject")
        decided = _race(2, lambda i, b=biz: svc.decide(
            b, holder, outcomes[i], "face_mismatch", "race test", 2))
        ok = [r for r in decided if not isinstance(r, Exception)]
        assert len(ok) == 1, decided
        assert all(isinstance(r, StaleCase) for r in decided if isinstance(r, Exception))
        with Session(mt_engine) as s:
            rows = s.exec(select(Decision).where(Decision.biz_id == biz)).all()
            v = s.exec(select(Verification).where(Verification.biz_id == biz)).one()
        assert len(rows) == 1 and v.decision_state == ok[0].state and v.version == 3
    from faceid.store import audit

    with Session(mt_engine) as s:
        assert audit.verify_chain(s).ok


def test_with_the_real_fetch_service_and_simulator(sqlite_engine: Engine) -> None:
    # The duck-typed seam against the real FetchService (and the demo simulator over HTTP).
    import time

    from faceid.api.simulator import start_in_thread
    from faceid.app import Desk

    sim = start_in_thread()
    desk = Desk(Settings(), sqlite_engine, simulator=sim)
    try:
        biz = sim.state.add(generate_result(4242, anchor=int(time.time()), status="OK"))
        svc = desk.review
        look = svc.lookup(biz, REVIEWER)
        assert not look.stored and look.can_fetch and look.reads_left == 3
        assert look.deadline and look.deadline.endswith("UTC")
        out = svc.fetch(biz, REVIEWER)
        assert out.ok and out.stored, out.message
        assert svc.lookup(biz, REVIEWER).stored
        view = svc.open_case(biz, REVIEWER)
        assert view is not None and view.source == "api"
        missing = svc.fetch(f"{int(time.time())},no-such-case", REVIEWER)
        assert not missing.ok and not missing.stored and "no result" in missing.message
    finally:
        desk.close()
        sim.stop()


def test_audit_trail_covers_every_kind_of_action(sqlite_engine: Engine) -> None:
    # Sign-in (good and bad), fetch (good and bad), view, reveal, claim, decision, note,
    # export, user changes and the sign-out they cause: each leaves an entry naming who.
    import io
    import time

    from argon2 import PasswordHasher

    from faceid.accounts.auth import SessionGate
    from faceid.accounts.users import UserService, cli_actor
    from faceid.api.simulator import start_in_thread
    from faceid.app import Desk
    from faceid.reports import export
    from faceid.store import audit
    from faceid.store.tables import AuditEvent

    sim = start_in_thread()
    desk = Desk(Settings(), sqlite_engine, simulator=sim)
    try:
        users = UserService(sqlite_engine, PasswordHasher(time_cost=1, memory_cost=8,
                                                          parallelism=1))
        admin = cli_actor()
        password = "correct horse battery staple"
        users.add(admin, "rita", "reviewer", password=password)
        gate, state = SessionGate(users), {}
        assert gate.sign_in_password(state, "rita", "wrong") is None
        rita = gate.sign_in_password(state, "rita", password)
        assert rita is not None
        biz = sim.state.add(generate_result(4243, anchor=int(time.time()), status="OK"))
        assert desk.review.fetch(biz, rita).stored
        assert not desk.review.fetch(f"{int(time.time())},missing", rita).ok
        svc = desk.review
        svc.open_case(biz, rita)
        svc.reveal_pii(biz, rita)
        svc.claim(biz, rita, 1)
        svc.decide(biz, rita, "approve", None, None, 2)
        svc.add_note(biz, rita, "done")
        export.export_csv(sqlite_engine, io.BytesIO(), None, Actor("sam", "Sam", "senior"))
        users.disable(admin, "rita")
        assert gate.current(state) is None
        with Session(sqlite_engine) as s:
            events = list(s.exec(select(AuditEvent)).all())
            assert audit.verify_chain(s).ok
    finally:
        desk.close()
        sim.stop()
    by_action = {e.action: e.actor for e in events}
    assert by_action == {
        "user.add": admin.username, "login.failed": "anonymous", "login": "rita",
        "fetched": "rita", "fetch failed": "rita", "view": "rita", "reveal_pii": "rita",
        "claim": "rita", "decide": "rita", "note": "rita", "export": "sam",
        "user.disable": admin.username, "logout": "rita",
    }


# --------------------------------------------------------------------------- linked identities

NUMBER = "110101199003071234"


def people_docs() -> list[dict[str, Any]]:
    return [
        person_doc(1, "1,me", "张三", NUMBER, biz_no="order-7"),
        person_doc(2, "2,alias", "李四", NUMBER, biz_no=None),
        person_doc(3, "3,again", " 张 三", NUMBER, biz_no=None),  # spacing is not another name
        person_doc(4, "4,same-order", "王五", "440101199001011234", biz_no="order-7"),
        person_doc(5, "5,stranger", "赵六", "510101199001011234", biz_no=None),
        # No ID number, no biz_no: links to nothing.
        person_doc(6, "6,nobody", "钱七", None, biz_no=None),
    ]


@pytest.fixture
def people(engine: Engine, clock: Clock) -> ReviewService:
    seed(engine, people_docs())
    clock.now = utcnow()  # reveals are timed by their audit events, written at real time
    return ReviewService(engine, None, Settings(), clock=clock)


def test_queue_linked_column_counts_the_same_id_number(people: ReviewService) -> None:
    page = people.queue(QueueFilter(), "biz_id", actor=REVIEWER)
    linked = dict(zip(page.rows["biz_id"], page.rows["linked"], strict=True))
    # Three cases share the number and one of them carries another name: each sees 2 others,
    # and each sees a different name among them (张三 vs 李四; for 李四, 张三 is the other).
    assert linked == {"1,me": "2 · other name", "2,alias": "2 · other name",
                      "3,again": "2 · other name",
                      # A shared biz_no is shown on the case page, not counted here.
                      "4,same-order": "", "5,stranger": "", "6,nobody": ""}
    assert "李四" not in page.rows.to_string() and "张三" not in page.rows.to_string()
    only = people.queue(QueueFilter(linked_only=True), "newest", actor=REVIEWER)
    assert only.total == 3 and set(only.biz_ids) == {"1,me", "2,alias", "3,again"}
    # The filter combines with the others (and with paging) in SQL.
    one = people.queue(QueueFilter(linked_only=True, search="alias"), actor=REVIEWER)
    assert one.biz_ids == ["2,alias"]
    paged = people.queue(QueueFilter(linked_only=True), "biz_id", page=2, page_size=2,
                         actor=REVIEWER)
    assert paged.biz_ids == ["3,again"] and list(paged.rows["linked"]) == ["2 · other name"]


def test_queue_other_name_needs_a_different_name(people: ReviewService, engine: Engine) -> None:
    # Without the alias, the same number under the same name (spacing aside) is no alias.
    with Session(engine) as s:
        s.execute(text("UPDATE verifications SET id_number_hash = NULL "
                       "WHERE biz_id = '2,alias'"))
        s.commit()
    page = people.queue(QueueFilter(linked_only=True), "biz_id", actor=REVIEWER)
    assert dict(zip(page.biz_ids, page.rows["linked"], strict=True)) == {
        "1,me": "1", "3,again": "1"}


def test_case_view_lists_linked_cases_masked_until_revealed(people: ReviewService) -> None:
    view = people.open_case("1,me", REVIEWER)
    assert view is not None and view.linked is not None
    linked = view.linked
    assert (linked.count, linked.same_id_count, linked.same_biz_no_count) == (3, 2, 1)
    assert linked.other_name_count == 1 and not linked.truncated
    assert linked.other_names == ("李*",) and not linked.names_revealed
    rows = {r["biz_id"]: r for r in linked.rows.to_dict("records")}
    assert set(rows) == {"2,alias", "3,again", "4,same-order"}
    assert rows["2,alias"]["different name"] is True
    assert rows["3,again"]["different name"] is False
    assert rows["4,same-order"]["link"] == "same biz_no"
    assert rows["4,same-order"]["different name"] is False  # another number: not an alias
    assert {"case time (UTC)", "status", "liveness", "review state"} <= set(linked.rows.columns)
    assert "李四" not in linked.rows.to_string() and rows["2,alias"]["name (masked)"] == "李*"
    # Compare gets this case and the linked ones, newest first (here all three fit).
    assert linked.compare_ids() == ["1,me", *linked.biz_ids] and not linked.more_than()
    assert linked.compare_ids(2) == ["1,me", linked.biz_ids[0]] and linked.more_than(2)
    # The reveal (audited, on this case) shows the other name in clear...
    revealed = people.reveal_pii("1,me", REVIEWER).linked
    assert revealed is not None and revealed.names_revealed
    assert revealed.other_names == ("李四",)
    assert "李四" in set(revealed.rows["name"])
    # ...but not to a role that may not reveal, whatever the page asks for.
    auditor = people.open_case("1,me", AUDITOR, reveal=True)
    assert auditor is not None and auditor.linked is not None
    assert auditor.linked.other_names == ("李*",) and not auditor.linked.names_revealed


def test_case_view_without_links(people: ReviewService) -> None:
    for biz in ("5,stranger", "6,nobody"):
        view = people.open_case(biz, REVIEWER)
        assert view is not None and view.linked is not None
        assert view.linked.count == 0 and view.linked.rows.empty, biz
        assert view.linked.compare_ids() == [biz]


def test_linked_list_is_capped_newest_first(engine: Engine) -> None:
    from faceid.review.linking import find_linked

    seed(engine, people_docs())
    with Session(engine) as s:
        me = s.exec(select(Verification).where(Verification.biz_id == "1,me")).one()
        assert me.id is not None
        capped = find_linked(s, me_id=me.id, biz_id=me.biz_id, name=me.idcard_name,
                             id_hash=me.id_number_hash, biz_no=me.biz_no, limit=2)
        full = find_linked(s, me_id=me.id, biz_id=me.biz_id, name=me.idcard_name,
                           id_hash=me.id_number_hash, biz_no=me.biz_no)
    assert capped.truncated and capped.count == 2 and capped.more_than()
    assert capped.biz_ids == full.biz_ids[:2]
    times = list(full.rows["case time (UTC)"])
    assert times == sorted(times, reverse=True)


def _plans(engine: Engine, run: Any) -> list[str]:
    """EXPLAIN QUERY PLAN of every SELECT that ``run()`` sends to SQLite."""
    from sqlalchemy import event

    sent: list[tuple[str, Any]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    with engine.connect() as conn:
        return [statement + "\n=> " + "; ".join(
            str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement,
                                                     parameters).all())
            for statement, parameters in sent]


def test_linked_queries_use_the_hash_index(sqlite_engine: Engine) -> None:
    seed(sqlite_engine, people_docs())
    svc = ReviewService(sqlite_engine, None, Settings())
    plans = _plans(sqlite_engine, lambda: svc.queue(QueueFilter(linked_only=True),
                                                     actor=REVIEWER))
    page = next(p for p in plans if "queue_page" in p)
    # The correlated count runs on the index (covering: the table is not read) ...
    assert "SEARCH linked_other USING COVERING INDEX ix_verifications_id_number_hash" in page
    # ... and so does the "linked only" filter, in the count and in the page query.
    count = next(p for p in plans if p.startswith("SELECT count(*)"))
    for plan in (count, page):
        assert "LIST SUBQUERY" in plan
        assert "linked_other USING COVERING INDEX ix_verifications_id_number_hash" in plan
        assert "SCAN linked_other" not in plan
    # The case page's linked cases: both indexes (id_number_hash OR biz_no), no table scan.
    plans = _plans(sqlite_engine, lambda: svc.open_case("1,me", REVIEWER, record_view=False))
    linked = next(p for p in plans if "verifications.id_number_hash = ? OR" in p)
    assert "MULTI-INDEX OR" in linked
    assert "ix_verifications_id_number_hash" in linked and "ix_verifications_biz_no" in linked
    assert "SCAN verifications" not in linked
