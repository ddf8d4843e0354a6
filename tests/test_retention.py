"""Retention purge: exactly what the policy says, once, audited, and never the append-only rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text, update
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col, select

from faceid.access.actors import Actor
from faceid.access.permissions import PermissionDenied
from faceid.api.simulator import generate_result
from faceid.core.errors import ConfigError
from faceid.reports import retention
from faceid.reports.retention import PURGED, RetentionPolicy, purge, purge_document, purge_flags
from faceid.store import audit
from faceid.store import write as store
from faceid.store.tables import AuditEvent, Decision, Inbox, RawResponse, StoredImage, Verification

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ADMIN = Actor("root.admin", "Root Admin", "admin")
POLICY = RetentionPolicy(images_days=30, pii_days=90)
#: Seeds whose simulated case has ID-card OCR, quality echoes, biz_extra_data and images.
AGES = {"young": (10, 10), "middle": (6, 60), "old": (7, 120), "older": (0, 400)}


def seed_cases(engine: Engine, hash_key: bytes) -> dict[str, dict[str, Any]]:
    """Store one case per age; return label -> {doc, biz_id, vid}."""
    cases = {}
    for label, (seed, age_days) in AGES.items():
        doc = generate_result(seed, status="OK")
        stored = store.ingest(engine, json.dumps(doc).encode(), source="import",
                              hash_key=hash_key)
        assert stored.created and stored.verification_id
        with engine.begin() as conn:
            conn.execute(update(Verification).where(col(Verification.id) ==
                                                    stored.verification_id)
                         .values(stored_at=NOW - timedelta(days=age_days)))
        cases[label] = {"doc": doc, "biz_id": stored.biz_id, "vid": stored.verification_id}
    return cases


def snapshot(engine: Engine) -> dict[str, Any]:
    """Everything the purge may touch or must not touch, in comparable form."""
    with Session(engine) as s:
        return {
            "verifications": [v.model_dump() for v in s.exec(
                select(Verification).order_by(col(Verification.id))).all()],
            "images": [(i.id, i.data, i.purged_at) for i in s.exec(
                select(StoredImage).order_by(col(StoredImage.id))).all()],
            "raw": [(r.id, r.body, r.purged_at) for r in s.exec(
                select(RawResponse).order_by(col(RawResponse.id))).all()],
            "inbox": [(i.id, i.body) for i in s.exec(select(Inbox).order_by(col(Inbox.id))).all()],
            "decisions": [d.model_dump() for d in s.exec(select(Decision)).all()],
            "audit": [e.model_dump() for e in s.exec(
                select(AuditEvent).order_by(col(AuditEvent.id))).all()],
        }


@pytest.fixture
def seeded(engine: Engine, hash_key: bytes) -> dict[str, dict[str, Any]]:
    cases = seed_cases(engine, hash_key)
    with Session(engine) as s:
        # A decision on an old case: decisions are the KYC record and must survive.
        s.add(Decision(verification_id=cases["old"]["vid"], biz_id=cases["old"]["biz_id"],
                       actor="demo.reviewer", outcome="approve", decided_at=NOW,
                       based_on_version=1))
        audit.record(s, "demo.reviewer", "decide", cases["old"]["biz_id"], {"outcome": "approve"})
        s.commit()
    # A body that failed to parse is kept in the inbox (with its images and PII); one old, one
    # recent, and one old but never processed (a crash leftover: the only copy, must stay).
    for age, processed in ((200, True), (1, True), (200, False)):
        if processed:
            inbox_id = store.ingest(engine, b'{"not": "a result"}', source="import",
                                    hash_key=hash_key).inbox_id
        else:
            inbox_id = store.receive(engine, b'{"status": "OK"}', source="import")
        with engine.begin() as conn:
            conn.execute(update(Inbox).where(col(Inbox.id) == inbox_id)
                         .values(received_at=NOW - timedelta(days=age)))
    return cases


def verification(engine: Engine, vid: int) -> Verification:
    with Session(engine) as s:
        v = s.get(Verification, vid)
        assert v is not None
        s.expunge(v)
        return v


def images_of(engine: Engine, vid: int) -> list[StoredImage]:
    with Session(engine) as s:
        rows = list(s.exec(select(StoredImage).where(StoredImage.verification_id == vid)).all())
        for r in rows:
            s.expunge(r)
        return rows


def raw_of(engine: Engine, vid: int) -> RawResponse:
    with Session(engine) as s:
        r = s.exec(select(RawResponse).where(RawResponse.verification_id == vid)).one()
        s.expunge(r)
        return r


def pii_values(doc: dict[str, Any]) -> list[str]:
    """The personal values the simulator put in a case (what must be gone after a PII purge)."""
    info = doc["idcard_info"]
    front = info["front_side"]["ocr_result"]
    values = [info["idcard_name"], info["idcard_number"], front["name"], front["id_card_number"],
              front["address"]]
    extra = doc["biz_info"]["biz_extra_data"]
    return [v for v in [*values, extra] if v]


def test_purge_removes_exactly_what_the_policy_says(
        engine: Engine, seeded: dict[str, dict[str, Any]]) -> None:
    before = snapshot(engine)
    report = purge(engine, POLICY, ADMIN, now=NOW, batch_size=1)  # batch 1: paging exercised

    assert (report.cases_images, report.cases_pii, report.raw_responses,
            report.inbox_bodies) == (3, 2, 2, 1)
    n_images = {label: len(images_of(engine, c["vid"])) for label, c in seeded.items()}
    assert all(n_images.values())
    assert report.images == n_images["middle"] + n_images["old"] + n_images["older"]

    young = seeded["young"]
    v = verification(engine, young["vid"])
    assert v.images_purged_at is None and v.pii_purged_at is None
    assert v.idcard_name and v.idcard_number
    assert all(i.data and i.purged_at is None for i in images_of(engine, young["vid"]))
    assert raw_of(engine, young["vid"]).purged_at is None

    middle = seeded["middle"]  # older than the image limit only
    v = verification(engine, middle["vid"])
    assert v.images_purged_at == NOW and v.pii_purged_at is None
    assert v.idcard_name == middle["doc"]["idcard_info"]["idcard_name"]
    assert all(i.data is None and i.purged_at == NOW for i in images_of(engine, middle["vid"]))
    raw = raw_of(engine, middle["vid"])
    assert raw.purged_at is None
    assert middle["doc"]["idcard_info"]["idcard_name"] in raw.body

    for label in ("old", "older"):
        case = seeded[label]
        v = verification(engine, case["vid"])
        assert v.images_purged_at == NOW and v.pii_purged_at == NOW
        assert v.idcard_name is None and v.idcard_number is None
        assert v.id_number_hash  # kept on purpose: links one ID number's cases (see module)
        imgs = images_of(engine, case["vid"])
        assert all(i.data is None and i.sha256 for i in imgs)  # provenance hash stays
        raw = raw_of(engine, case["vid"])
        assert raw.purged_at == NOW
        for value in pii_values(case["doc"]):
            assert value not in raw.body, (label, value)
        body = json.loads(raw.body)
        assert body["idcard_info"]["idcard_name"] == PURGED
        assert body["biz_info"]["biz_id"] == case["biz_id"]
        assert body["verify_result"] == case["doc"]["verify_result"]  # scores are not PII
        assert body["idcard_info"]["front_side"]["ocr_result"]["legality"] == \
            case["doc"]["idcard_info"]["front_side"]["ocr_result"]["legality"]

    after = snapshot(engine)
    assert after["decisions"] == before["decisions"]
    assert after["audit"][:-1] == before["audit"]  # the trail only grew, by one event
    inbox_before = dict(before["inbox"])
    inbox_after = dict(after["inbox"])
    changed = [i for i in inbox_before if inbox_before[i] != inbox_after[i]]
    assert len(changed) == 1 and inbox_after[changed[0]] is None


def test_purge_is_audited_once_with_counts_and_no_pii(
        engine: Engine, seeded: dict[str, dict[str, Any]]) -> None:
    report = purge(engine, POLICY, ADMIN, now=NOW)
    with Session(engine) as s:
        events = list(s.exec(select(AuditEvent).where(AuditEvent.action == "purge")).all())
        assert audit.verify_chain(s).ok
    assert len(events) == 1
    event = events[0]
    assert event.actor == "root.admin" and event.biz_id is None
    detail = json.loads(event.detail or "{}")
    assert detail["cases_pii"] == report.cases_pii == 2
    assert detail["images_days"] == 30 and detail["pii_days"] == 90
    for case in seeded.values():
        assert case["biz_id"] not in (event.detail or "")
        for value in pii_values(case["doc"]):
            assert value not in (event.detail or "")


def test_second_run_purges_nothing(engine: Engine, seeded: dict[str, dict[str, Any]]) -> None:
    first = purge(engine, POLICY, ADMIN, now=NOW)
    assert first.total > 0
    middle = snapshot(engine)
    second = purge(engine, POLICY, ADMIN, now=NOW + timedelta(hours=1))
    assert second.counts() == dict.fromkeys(first.counts(), 0)
    after = snapshot(engine)
    assert {k: v for k, v in after.items() if k != "audit"} == \
        {k: v for k, v in middle.items() if k != "audit"}


def test_dry_run_counts_what_a_real_run_does_and_changes_nothing(
        engine: Engine, seeded: dict[str, dict[str, Any]]) -> None:
    before = snapshot(engine)
    dry = purge(engine, POLICY, ADMIN, now=NOW, dry_run=True)
    assert dry.dry_run and dry.total > 0
    assert snapshot(engine) == before  # not even an audit event
    assert "Would purge" in dry.describe()
    real = purge(engine, POLICY, ADMIN, now=NOW)
    assert real.counts() == dry.counts()


def test_raw_response_trigger_still_refuses_any_later_update(
        engine: Engine, seeded: dict[str, dict[str, Any]]) -> None:
    purge(engine, POLICY, ADMIN, now=NOW)
    raw = raw_of(engine, seeded["old"]["vid"])
    for sql in ("UPDATE raw_responses SET body = 'x', purged_at = purged_at WHERE id = :id",
                "UPDATE raw_responses SET purged_at = NULL WHERE id = :id"):
        with pytest.raises(DBAPIError), engine.begin() as conn:
            conn.execute(text(sql), {"id": raw.id})
    assert raw_of(engine, seeded["old"]["vid"]).body == raw.body


def test_keep_forever_purges_nothing(engine: Engine, seeded: dict[str, dict[str, Any]]) -> None:
    before = snapshot(engine)
    report = purge(engine, RetentionPolicy(), ADMIN, now=NOW)
    assert report.total == 0 and "nothing purged" in report.describe()
    after = snapshot(engine)
    assert after["audit"][:-1] == before["audit"]
    assert {k: v for k, v in after.items() if k != "audit"} == \
        {k: v for k, v in before.items() if k != "audit"}


def test_images_only_policy_keeps_pii(engine: Engine,
                                      seeded: dict[str, dict[str, Any]]) -> None:
    report = purge(engine, RetentionPolicy(images_days=30), ADMIN, now=NOW)
    assert report.cases_images == 3 and report.cases_pii == 0 and report.raw_responses == 0
    assert verification(engine, seeded["older"]["vid"]).idcard_name


def test_only_admins_purge(engine: Engine, seeded: dict[str, dict[str, Any]]) -> None:
    before = snapshot(engine)
    for role in ("reviewer", "senior", "auditor"):
        with pytest.raises(PermissionDenied):
            purge(engine, POLICY, Actor(f"x.{role}", "X", role), now=NOW)
    assert snapshot(engine) == before


def test_a_failing_purge_is_still_audited(engine: Engine, seeded: dict[str, dict[str, Any]],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_args: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(retention, "_purge_pii", boom)
    with pytest.raises(RuntimeError):
        purge(engine, POLICY, ADMIN, now=NOW)
    with Session(engine) as s:
        event = s.exec(select(AuditEvent).where(AuditEvent.action == "purge")).one()
    detail = json.loads(event.detail or "{}")
    assert detail["error"] == "RuntimeError" and detail["cases_images"] == 3
    assert verification(engine, seeded["middle"]["vid"]).images_purged_at == NOW


# --------------------------------------------------------------------------- pure parts


def test_purge_document_is_an_allow_list() -> None:
    doc = generate_result(7, status="OK", hostile=True)
    doc["idcard_info"]["some_future_field"] = "王小明 13800138000"
    doc["images"]["image_best"] = "data:image/jpeg;base64,not-really"
    doc["images"]["image_idcard_front"] = "sha256:" + "a" * 64
    out = purge_document(doc)
    info, src = out["idcard_info"], doc["idcard_info"]
    assert info["some_future_field"] == PURGED
    assert info["idcard_mode"] == src["idcard_mode"]
    front = info["front_side"]["ocr_result"]
    assert front["legality"] == src["front_side"]["ocr_result"]["legality"]
    assert front["birthday"] == {"day": PURGED, "month": PURGED, "year": PURGED}
    assert front["race"] == PURGED and front["address"] == PURGED
    assert info["front_side"]["upload_times"] == src["front_side"]["upload_times"]
    for key, entry in info["ocr_front_quality"].items():
        assert entry["result"] == PURGED
        assert entry["quality"] == src["ocr_front_quality"][key]["quality"]
    assert out["biz_info"]["biz_extra_data"] == PURGED
    assert out["images"]["image_best"] == PURGED  # an undecodable payload could be a picture
    assert out["images"]["image_idcard_front"] == "sha256:" + "a" * 64
    assert out["liveness_result"] == doc["liveness_result"]
    assert doc["idcard_info"]["some_future_field"] != PURGED  # the input is not modified


def test_purge_flags_drops_quoted_values_under_pii_paths() -> None:
    flags = ["idcard_info.front_side.ocr_result.birthday.month: expected a whole number "
             '(got "13x")', "verify_result.result_faceid.confidence: expected a number (got "
             '"high")', "biz_info.biz_no: expected text (got {})"]
    assert purge_flags(flags) == [
        "idcard_info.front_side.ocr_result.birthday.month: expected a whole number "
        "(got [purged])", flags[1], "biz_info.biz_no: expected text (got [purged])"]
    assert purge_flags(None) is None


def test_policy_from_env_and_secrets() -> None:
    assert RetentionPolicy.from_env({}, {}) == RetentionPolicy(None, None)
    assert RetentionPolicy.from_env({}, {}).keeps_everything
    secrets = {"retention": {"images_days": 30, "pii_days": 365}}
    assert RetentionPolicy.from_env({}, secrets) == RetentionPolicy(30, 365)
    env = {"FACEID_RETAIN_IMAGES_DAYS": "7", "FACEID_RETAIN_PII_DAYS": "forever"}
    assert RetentionPolicy.from_env(env, secrets) == RetentionPolicy(7, None)
    for bad in ({"FACEID_RETAIN_IMAGES_DAYS": "a week"}, {"FACEID_RETAIN_IMAGES_DAYS": "0"},
                {"FACEID_RETAIN_IMAGES_DAYS": "-3"}):
        with pytest.raises(ConfigError):
            RetentionPolicy.from_env(bad, {})
    with pytest.raises(ConfigError):  # PII text purged while the ID-card pictures stay
        RetentionPolicy(images_days=None, pii_days=30)
    with pytest.raises(ConfigError):
        RetentionPolicy(images_days=60, pii_days=30)
