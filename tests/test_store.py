"""The write path: receive commits before parsing, process stores idempotently by biz_id,
raw responses are write-once, images round-trip, and a crash in between loses nothing."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from sqlalchemy import func, text
from sqlmodel import Session, select

from faceid.api.rawdoc import restore_images
from faceid.api.simulator import generate_result
from faceid.store import write as store
from faceid.store.tables import AuditEvent, Inbox, RawResponse, StoredImage, Verification


def count(engine, table) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(table)).one())


def sim_doc(seed: int = 3, **kw) -> dict:
    return generate_result(seed, status="OK", procedure_type="still", **kw)


def body_of(doc: dict) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


def image_payloads(doc: dict) -> dict[str, str]:
    """image key -> sha256 of the decoded JPEG, whatever the data-URI spelling."""
    out = {}
    for key, value in (doc.get("images") or {}).items():
        payload = value.split(",", 1)[1]
        out[key] = hashlib.sha256(base64.b64decode(payload)).hexdigest()
    return out


def test_receive_commits_the_body_without_parsing_it(engine) -> None:
    inbox_id = store.receive(engine, b"not json at all", source="api", origin="test")
    with Session(engine) as s:
        row = s.get(Inbox, inbox_id)
        assert row.body == b"not json at all" and row.processed_at is None
        assert row.body_sha256 == hashlib.sha256(b"not json at all").hexdigest()
    assert count(engine, Verification) == 0


def test_unparseable_body_is_kept_with_its_reason(engine, hash_key) -> None:
    result = store.ingest(engine, b'{"status": "OK"', source="import", hash_key=hash_key)
    assert not result.created and "truncated" in result.error
    with Session(engine) as s:
        row = s.get(Inbox, result.inbox_id)
        assert row.body == b'{"status": "OK"' and row.error and row.processed_at is not None
    assert count(engine, Verification) == 0


def test_ingest_is_idempotent_by_biz_id(engine, hash_key) -> None:
    body = body_of(sim_doc())
    first = store.ingest(engine, body, source="api", hash_key=hash_key)
    audits = count(engine, AuditEvent)
    second = store.ingest(engine, body, source="import", hash_key=hash_key)
    assert first.created and not second.created
    assert first.verification_id == second.verification_id
    assert count(engine, Verification) == 1 and count(engine, RawResponse) == 1
    assert count(engine, AuditEvent) == audits  # the duplicate is not an event
    with Session(engine) as s:
        # Once stored, inbox copies are dropped: the payload lives in raw_responses + images.
        assert all(r.body is None for r in s.exec(select(Inbox)).all())


def test_process_pending_finishes_what_a_crash_left(engine, hash_key) -> None:
    doc = sim_doc(5)
    store.receive(engine, body_of(doc), source="api")  # ...and the process "died" here
    assert count(engine, Verification) == 0
    done = store.process_pending(engine, hash_key=hash_key)
    assert [d.biz_id for d in done] == [doc["biz_info"]["biz_id"]] and done[0].created
    assert store.process_pending(engine, hash_key=hash_key) == []
    assert count(engine, Verification) == 1


def test_raw_document_and_images_round_trip_to_the_original(engine, hash_key) -> None:
    doc = generate_result(11, status="OK", procedure_type="selfie")
    assert doc.get("images"), "the seed must produce images"
    store.ingest(engine, body_of(doc), source="api", hash_key=hash_key)
    biz_id = doc["biz_info"]["biz_id"]
    raw = store.raw_document(engine, biz_id)
    # Images are out of the JSON: only sha256 references remain in the stored raw document.
    assert all(v.startswith("sha256:") for v in raw["images"].values())
    with Session(engine) as s:
        imgs = s.exec(select(StoredImage)).all()
    restored = restore_images(raw, {i.sha256: i.data for i in imgs if i.data})
    assert image_payloads(restored) == image_payloads(doc)
    assert {k: v for k, v in restored.items() if k != "images"} == \
        {k: v for k, v in doc.items() if k != "images"}


def test_raw_response_is_write_once(engine, hash_key) -> None:
    store.ingest(engine, body_of(sim_doc()), source="api", hash_key=hash_key)
    with pytest.raises(Exception, match="write-once"), engine.begin() as conn:
        conn.execute(text("UPDATE raw_responses SET body = '{}'"))
    with pytest.raises(Exception, match="write-once"), engine.begin() as conn:
        conn.execute(text("DELETE FROM raw_responses"))
    assert count(engine, RawResponse) == 1


def test_bad_base64_image_is_stored_flagged_not_refused(engine, hash_key) -> None:
    doc = sim_doc(7)
    key = next(iter(doc["images"]))
    doc["images"][key] = "data:image/jpeg;base64,!!!not-base64!!!"
    result = store.ingest(engine, body_of(doc), source="import", hash_key=hash_key)
    assert result.created and result.error is None
    with Session(engine) as s:
        v = s.get(Verification, result.verification_id)
        assert v.parse_flag_count >= 1
        bad = s.exec(select(StoredImage).where(StoredImage.kind == key.removeprefix("image_"))
                     ).one()
        assert bad.data is None and "base64" in bad.error
    # The undecodable payload is evidence: kept verbatim in the raw document.
    assert store.raw_document(engine, doc["biz_info"]["biz_id"])["images"][key] == \
        "data:image/jpeg;base64,!!!not-base64!!!"


def test_page_example_is_stored_with_its_quirks(engine, hash_key, page_success) -> None:
    result = store.ingest(engine, page_success, source="import", hash_key=hash_key)
    assert result.created and result.biz_id == "1462259748,52b13fb5-8dfb-4537-a62b-a641d5e929f1"
    raw = store.raw_document(engine, result.biz_id)
    legality = raw["idcard_info"]["front_side"]["ocr_result"]["legality"]
    assert "Temporary ID Photo " in legality  # the trailing space survives


def test_error_envelope_is_refused(engine, hash_key, page_failure) -> None:
    result = store.ingest(engine, page_failure, source="import", hash_key=hash_key)
    assert result.error and "error response" in result.error
    assert count(engine, Verification) == 0


def test_stored_biz_ids_handles_more_than_one_chunk(engine, hash_key) -> None:
    doc = sim_doc(1)
    store.ingest(engine, body_of(doc), source="api", hash_key=hash_key)
    wanted = [f"1,{i}" for i in range(1200)] + [doc["biz_info"]["biz_id"]]
    assert store.stored_biz_ids(engine, wanted) == {doc["biz_info"]["biz_id"]}


def test_process_unknown_inbox_row_raises(engine, hash_key) -> None:
    with pytest.raises(LookupError):
        store.process(engine, 999_999, hash_key=hash_key)
