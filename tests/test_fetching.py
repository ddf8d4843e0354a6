"""FetchService against the simulator over real HTTP: fetch once, keep forever.

Counts of simulator requests prove "no call"; the FakeClock drives the 1-day window.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from faceid.access.actors import Actor
from faceid.api.client import FaceIDClient
from faceid.api.rawdoc import restore_images
from faceid.api.simulator import (
    PROCEDURE_TYPES,
    STATUSES,
    FakeClock,
    SimulatorState,
    generate_result,
    shape_response,
    start_in_thread,
)
from faceid.core.config import Settings
from faceid.core.errors import QuotaExhausted
from faceid.core.timeutil import fmt, from_unix
from faceid.store import fetching
from faceid.store import write as store
from faceid.store.fetching import FetchService
from faceid.store.quota import attempt_spent, biz_id_started
from faceid.store.tables import AuditEvent, FetchAttempt, Inbox, StoredImage, Verification

KEY = "key-fetch-tests"
SECRET = "S3CRET-fetch-never-shown"  # noqa: S105
NOW = 1_800_000_000.0
SETTINGS = Settings(api_key=KEY, api_secret=SECRET, pii_key="test-pii")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def sim(clock: FakeClock) -> Iterator:
    with start_in_thread(SimulatorState(api_key=KEY, api_secret=SECRET, clock=clock)) as server:
        yield server


@pytest.fixture
def client(sim) -> Iterator[FaceIDClient]:
    c = FaceIDClient(KEY, SECRET, sim.base_url, sleep=lambda s: None, max_concurrency=8)
    yield c
    c.close()


def make_service(engine: Engine, client: FaceIDClient, clock: FakeClock) -> FetchService:
    return FetchService(engine, lambda: client, SETTINGS, clock=clock.now)


@pytest.fixture
def service(engine, client, clock) -> FetchService:
    return make_service(engine, client, clock)


def fresh(sim, clock: FakeClock, seed: int, **kw) -> str:
    """Add a case whose biz_id starts now (so the 1-day window is open)."""
    biz_id = f"{int(clock.now())},{uuid.UUID(int=seed, version=4)}"
    return sim.state.add(generate_result(seed, biz_id, **kw))


def count(engine: Engine, table) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(table)).one())


def audit_actions(engine: Engine, biz_id: str) -> list[str]:
    with Session(engine) as s:
        return [e.action for e in s.exec(select(AuditEvent).where(AuditEvent.biz_id == biz_id))]


def ledger(engine: Engine, biz_id: str) -> list[FetchAttempt]:
    with Session(engine) as s:
        return list(s.exec(select(FetchAttempt).where(FetchAttempt.biz_id == biz_id)
                           .order_by(FetchAttempt.id)).all())


def _sha_of_uri(value: str) -> str:
    return hashlib.sha256(base64.b64decode(value.split(",", 1)[1])).hexdigest()


def normalise(doc: dict) -> dict:
    """Compare documents by content: per-call fields dropped, images by decoded sha256."""
    out = {k: v for k, v in doc.items() if k not in ("request_id", "time_used")}
    if isinstance(out.get("images"), dict):
        out["images"] = {k: _sha_of_uri(v) if v else v for k, v in out["images"].items()}
    if out.get("multifaces_image"):
        out["multifaces_image"] = _sha_of_uri(out["multifaces_image"])
    return out


# --------------------------------------------------------------------------- storing


def test_fetch_stores_every_field_and_image(engine, service, sim) -> None:
    cases = [generate_result(40 + i, status="OK", procedure_type=p)
             for i, p in enumerate(PROCEDURE_TYPES)]
    cases += [generate_result(60 + i, status=s) for i, s in enumerate(STATUSES) if s != "OK"]
    ids = [sim.state.add(c) for c in cases]
    images_seen = 0
    for biz_id in ids:
        outcome = service.fetch(biz_id, "alice")
        assert outcome.status == "stored" and outcome.api_calls == 1, outcome
        expected = shape_response(sim.state.result(biz_id), return_image="4",
                                  return_verify_time="1")
        raw = store.raw_document(engine, biz_id)
        with Session(engine) as s:
            v = s.exec(select(Verification).where(Verification.biz_id == biz_id)).one()
            imgs = s.exec(select(StoredImage).where(StoredImage.verification_id == v.id)).all()
        assert v.status == expected["status"] and v.source == "api"
        assert v.biz_no == expected["biz_info"]["biz_no"]
        restored = restore_images(raw, {i.sha256: i.data for i in imgs if i.data})
        assert normalise(restored) == normalise(expected)
        # Every image the simulator sent is stored, decoded, with the simulator's sha256.
        sent = {_sha_of_uri(u) for u in (expected.get("images") or {}).values() if u}
        if expected.get("multifaces_image"):
            sent.add(_sha_of_uri(expected["multifaces_image"]))
        assert {i.sha256 for i in imgs} == sent
        assert all(hashlib.sha256(i.data).hexdigest() == i.sha256 for i in imgs)
        images_seen += len(sent)
    assert images_seen >= 5
    with Session(engine) as s:  # each fetch asked for everything, once
        assert all(a.outcome == "OK" for a in s.exec(select(FetchAttempt)))
    assert sim.state.total_requests == len(ids)


def test_request_asks_for_all_images_and_verify_time(engine, clock) -> None:
    seen: list[httpx.Request] = []
    doc = generate_result(1, status="OK")

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=doc)

    c = FaceIDClient(KEY, SECRET, "https://api.example.test",
                     transport=httpx.MockTransport(handler), sleep=lambda s: None)
    make_service(engine, c, clock).fetch(doc["biz_info"]["biz_id"], "alice")
    assert seen[0].url.params["return_image"] == "4"
    assert seen[0].url.params["return_verify_time"] == "1"


def test_ledger_row_is_committed_before_the_request(engine, clock) -> None:
    doc = generate_result(2, status="OK")
    biz_id = doc["biz_info"]["biz_id"]
    during: list[tuple] = []

    def handler(request: httpx.Request) -> httpx.Response:
        # A separate session sees the row: it was committed, and is still "in flight".
        during.extend((r.attempt, r.outcome, r.actor) for r in ledger(engine, biz_id))
        return httpx.Response(200, json=doc)

    c = FaceIDClient(KEY, SECRET, "https://api.example.test",
                     transport=httpx.MockTransport(handler), sleep=lambda s: None)
    make_service(engine, c, clock).fetch(biz_id, "alice")
    assert during == [(1, None, "alice")]
    (row,) = ledger(engine, biz_id)
    assert (row.outcome, row.http_status) == ("OK", 200) and row.finished_at is not None


def test_no_api_call_for_an_already_stored_biz_id(engine, service, sim, clock) -> None:
    biz_id = fresh(sim, clock, 3, status="OK")
    assert service.fetch(biz_id, "alice").status == "stored"
    assert sim.state.total_requests == 1
    again = service.fetch(biz_id, "bob")
    assert again.status == "already_stored" and again.api_calls == 0
    summary = service.fetch_many([biz_id, biz_id], "bob", concurrency=1)
    assert summary.already_had == 1 and summary.api_calls == 0
    assert service.lookup(biz_id, "bob").stored
    assert sim.state.total_requests == 1


def test_lookup_reports_quota_before_any_fetch(service, sim, clock) -> None:
    biz_id = fresh(sim, clock, 4)
    result = service.lookup(biz_id, "alice")
    deadline = from_unix(int(NOW) + 86400)
    assert not result.stored and result.quota.reads_left == 3 and result.quota.can_read
    assert result.quota.deadline == deadline
    assert f"3 reads left until {fmt(deadline)}" in result.message
    assert sim.state.total_requests == 0


def test_deadline_falls_back_to_first_attempt(engine, service) -> None:
    with Session(engine) as s:
        s.add(FetchAttempt(biz_id="no-timestamp-id", attempt=1, started_at=from_unix(NOW - 60),
                           outcome="NETWORK_ERROR"))
        s.commit()
    q = service.quota("no-timestamp-id")
    assert q.deadline == from_unix(NOW - 60 + 86400) and q.reads_left == 3
    assert biz_id_started("1462259748,52b1") == from_unix(1462259748)
    assert biz_id_started("abc,def") is None and service.quota("x").deadline is None


@pytest.mark.parametrize(("outcome", "status", "spent"), [
    ("OK", 200, True), ("INTERNAL_ERROR", 500, True), ("AMBIGUOUS_TRANSPORT", None, True),
    (None, None, True), ("CONCURRENCY_LIMIT_EXCEEDED", 403, False),
    ("NETWORK_ERROR", None, False), ("RESULT_NOT_FOUND", 400, False),
    ("DATA_DESTROYED", 403, False), ("AUTHENTICATION_ERROR", 403, False),
])
def test_which_attempts_spend_a_read(outcome, status, spent) -> None:
    assert attempt_spent(outcome, status) is spent


# --------------------------------------------------------------------------- refetch


def test_refetch_keeps_first_copy_and_audits_the_difference(engine, service, sim, clock) -> None:
    biz_id = fresh(sim, clock, 5, status="OK")
    service.fetch(biz_id, "alice")
    first = store.raw_document(engine, biz_id)
    changed = sim.state.result(biz_id)
    changed["biz_info"]["biz_no"] = "changed-at-faceid"
    sim.state.add(changed)  # FaceID's copy changes (re-adding resets the simulator's count)
    outcome = service.fetch(biz_id, "bob", refetch=True)
    assert outcome.status == "refetched" and outcome.body_differs and outcome.api_calls == 1
    assert "differs" in outcome.message
    assert store.raw_document(engine, biz_id) == first  # write-once: the first copy stands
    assert count(engine, Verification) == 1
    with Session(engine) as s:
        event = s.exec(select(AuditEvent).where(AuditEvent.action == "refetched")).one()
    detail = json.loads(event.detail)
    assert event.actor == "bob" and detail["content_differs"] is True
    assert detail["stored_sha256"] != detail["new_sha256"]


def test_refetch_refused_when_quota_spent(engine, service, sim, clock) -> None:
    biz_id = fresh(sim, clock, 6, status="OK")
    assert service.fetch(biz_id, "alice").status == "stored"
    assert service.fetch(biz_id, "alice", refetch=True).status == "refetched"
    last = service.fetch(biz_id, "alice", refetch=True)
    assert last.status == "refetched" and last.body_differs  # new request_id each read
    assert service.quota(biz_id).reads_left == 0
    with pytest.raises(QuotaExhausted, match="all 3 reads"):
        service.fetch(biz_id, "alice", refetch=True)
    assert sim.state.total_requests == 3 and sim.state.over_quota_reads == 0


def test_refetch_refused_when_window_closed(service, sim, clock) -> None:
    biz_id = fresh(sim, clock, 7, status="OK")
    service.fetch(biz_id, "alice")
    clock.advance(86400 + 1)
    assert not service.lookup(biz_id, "alice").quota.window_open
    with pytest.raises(QuotaExhausted, match="window closed"):
        service.fetch(biz_id, "alice", refetch=True)
    assert sim.state.total_requests == 1


def test_refetch_of_unchanged_content_says_so(engine, service, sim, clock) -> None:
    biz_id = fresh(sim, clock, 8, status="OK")
    service.fetch(biz_id, "alice")
    outcome = service.fetch(biz_id, "alice", refetch=True)
    assert outcome.status == "refetched" and "same content" in outcome.message


# --------------------------------------------------------------------------- refusals


def test_result_not_found_is_a_plain_outcome(engine, service) -> None:
    outcome = service.fetch("1800000000,unknown", "alice")
    assert (outcome.status, outcome.code, outcome.http_status) == \
        ("not_found", "RESULT_NOT_FOUND", 400)
    assert "no result for this biz_id" in outcome.message
    assert audit_actions(engine, "1800000000,unknown") == ["fetch failed"]
    assert service.quota("1800000000,unknown").reads_left == 3  # a 400 never counts


def test_data_destroyed_is_a_plain_outcome_and_remembered(engine, service, sim, clock) -> None:
    biz_id = fresh(sim, clock, 9, status="OK")
    clock.advance(86400 + 5)  # FaceID has dropped it
    outcome = service.fetch(biz_id, "alice")
    assert outcome.status == "expired" and outcome.code == "DATA_DESTROYED"
    q = service.quota(biz_id)
    assert q.known_destroyed and not q.can_read
    again = service.fetch(biz_id, "alice")  # the ledger knows: no second call
    assert again.status == "expired" and again.api_calls == 0
    assert sim.state.total_requests == 1
    assert audit_actions(engine, biz_id) == ["fetch failed", "fetch refused"]


def test_quota_spent_elsewhere_is_a_plain_outcome_without_a_call(engine, service, sim,
                                                                 clock) -> None:
    biz_id = fresh(sim, clock, 10, status="OK")
    with Session(engine) as s:  # three reads in flight when a previous process died
        for n in (1, 2, 3):
            s.add(FetchAttempt(biz_id=biz_id, attempt=n, started_at=from_unix(NOW)))
        s.commit()
    outcome = service.fetch(biz_id, "alice")
    assert outcome.status == "expired" and outcome.api_calls == 0
    assert "all 3 reads" in outcome.message
    assert sim.state.total_requests == 0


def test_authentication_error_is_a_plain_outcome(engine, sim, clock) -> None:
    biz_id = fresh(sim, clock, 11, status="OK")
    wrong = FaceIDClient(KEY, "wrong-secret-value", sim.base_url, sleep=lambda s: None)
    outcome = make_service(engine, wrong, clock).fetch(biz_id, "alice")
    assert outcome.status == "failed" and outcome.code == "AUTHENTICATION_ERROR"
    assert "api_key/api_secret" in outcome.message and "wrong-secret" not in outcome.message
    assert count(engine, Verification) == 0


def test_concurrency_limit_is_retried(engine, service, sim, clock) -> None:
    biz_id = fresh(sim, clock, 12, status="OK")
    sim.state.fail_next("CONCURRENCY_LIMIT_EXCEEDED", 2)
    outcome = service.fetch(biz_id, "alice")
    assert outcome.status == "stored" and outcome.api_calls == 3
    assert [r.outcome for r in ledger(engine, biz_id)] == \
        ["CONCURRENCY_LIMIT_EXCEEDED", "CONCURRENCY_LIMIT_EXCEEDED", "OK"]
    assert [r.attempt for r in ledger(engine, biz_id)] == [1, 2, 3]
    assert service.quota(biz_id).reads_used == 1


def test_internal_error_is_retried_at_most_once(engine, service, sim, clock) -> None:
    once = fresh(sim, clock, 13, status="OK")
    sim.state.fail_next("INTERNAL_ERROR", 1)
    assert service.fetch(once, "alice").status == "stored"
    twice = fresh(sim, clock, 14, status="OK")
    sim.state.fail_next("INTERNAL_ERROR", 3)
    outcome = service.fetch(twice, "alice")
    assert outcome.status == "failed" and outcome.code == "INTERNAL_ERROR"
    assert outcome.api_calls == 2 and sim.state.total_requests == 4
    assert service.quota(twice).reads_used == 2  # ambiguous: counted as spent


def test_ambiguous_retry_never_becomes_a_fourth_read(engine, service, sim, clock) -> None:
    biz_id = fresh(sim, clock, 15, status="OK")
    with Session(engine) as s:
        for n in (1, 2):
            s.add(FetchAttempt(biz_id=biz_id, attempt=n, started_at=from_unix(NOW),
                               outcome="INTERNAL_ERROR", http_status=500))
        s.commit()
    sim.state.fail_next("INTERNAL_ERROR", 1)
    outcome = service.fetch(biz_id, "alice")
    # The 3rd read was ambiguous; its retry would be a 4th: the ledger guard stops it.
    assert outcome.status == "expired" and outcome.api_calls == 1
    assert sim.state.total_requests == 1


def test_network_error_is_a_plain_outcome(engine, clock) -> None:
    c = FaceIDClient(KEY, SECRET, "http://127.0.0.1:9", sleep=lambda s: None, max_attempts=2)
    outcome = make_service(engine, c, clock).fetch("1800000000,x", "alice")
    assert outcome.status == "failed" and outcome.code == "NETWORK_ERROR"
    assert outcome.api_calls == 2
    assert make_service(engine, c, clock).quota("1800000000,x").reads_used == 0


# --------------------------------------------------------------------------- crash recovery


def test_crash_between_receive_and_process_is_recovered(engine, service, sim, clock,
                                                        monkeypatch) -> None:
    biz_id = fresh(sim, clock, 16, status="OK")

    def die(*a, **kw):
        raise SystemExit("killed between receive and process")

    with monkeypatch.context() as m:
        m.setattr(fetching.store, "finish_ingest", die)
        with pytest.raises(SystemExit):
            service.fetch(biz_id, "alice")
    assert count(engine, Verification) == 0
    with Session(engine) as s:
        (row,) = s.exec(select(Inbox)).all()
        assert row.body and row.processed_at is None  # the body survived
    summary = service.fetch_many([biz_id], "alice", concurrency=1)
    assert summary.resumed == 1 and summary.already_had == 1 and summary.api_calls == 0
    assert "interrupted run" in summary.message
    assert sim.state.total_requests == 1
    assert store.raw_document(engine, biz_id)["biz_info"]["biz_id"] == biz_id


def test_body_that_is_not_a_result_is_kept_for_a_person(engine, clock) -> None:
    c = FaceIDClient(KEY, SECRET, "https://api.example.test", sleep=lambda s: None,
                     transport=httpx.MockTransport(lambda r: httpx.Response(200, text="[1,2]")))
    outcome = make_service(engine, c, clock).fetch("1800000000,y", "alice")
    assert outcome.status == "failed" and "could not be stored" in outcome.message
    with Session(engine) as s:
        (row,) = s.exec(select(Inbox)).all()
        assert row.body == b"[1,2]" and row.error


# --------------------------------------------------------------------------- batches


def test_fetch_many_counts_each_kind(mt_engine, sim, client, clock) -> None:
    service = make_service(mt_engine, client, clock)
    good = [fresh(sim, clock, 100 + i) for i in range(8)]
    had = fresh(sim, clock, 120)
    service.fetch(had, "alice")
    gone = fresh(sim, clock, 121)
    for _ in range(3):  # someone else read it three times: FaceID has destroyed it
        httpx.get(f"{sim.base_url}/faceid/lite/get_result",
                  params={"api_key": KEY, "api_secret": SECRET, "biz_id": gone})
    seen = []
    summary = service.fetch_many([*good, had, gone, "1800000000,missing", good[0]], "carol",
                                 concurrency=4, progress=seen.append)
    assert (summary.stored, summary.already_had, summary.not_found, summary.expired,
            summary.failed) == (8, 1, 1, 1, 0)
    assert len(seen) == 11 and not summary.all_ok
    assert "8 fetched and stored" in summary.message
    assert store.stored_biz_ids(mt_engine, good) == set(good)
    assert sim.state.over_quota_reads == 0 and sim.state.max_in_flight <= 4


def test_fetch_many_stops_calling_after_authentication_error(mt_engine, sim, clock) -> None:
    ids = [fresh(sim, clock, 130 + i) for i in range(5)]
    wrong = FaceIDClient(KEY, "not-the-secret", sim.base_url, sleep=lambda s: None)
    summary = make_service(mt_engine, wrong, clock).fetch_many(ids, "alice", concurrency=1)
    assert summary.failed == 5 and sim.state.total_requests == 1
    assert sum("Not attempted" in o.message for o in summary.outcomes) == 4
    # The attempts the dispatcher had announced for the others were struck (no read spent),
    # and no job is left queued for another process to send with the same credentials.
    assert count(mt_engine, FetchAttempt) == 1
    jobs = make_service(mt_engine, wrong, clock).queue.jobs(ids)
    assert {j.state for j in jobs.values()} == {"failed"}


def test_parallel_fetches_of_one_biz_id_spend_one_read(mt_engine, sim, client, clock) -> None:
    service = make_service(mt_engine, client, clock)
    biz_id = fresh(sim, clock, 140)
    sim.state.latency_s = 0.05
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(lambda _: service.fetch(biz_id, "x"), range(6)))
    assert sorted(o.status for o in outcomes) == ["already_stored"] * 5 + ["stored"]
    assert sim.state.total_requests == 1


# --------------------------------------------------------------------------- secrets, actors


def test_secret_never_in_logs_outcomes_or_audit(engine, service, sim, clock, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    ok = fresh(sim, clock, 150, status="OK")
    sim.state.fail_next("INTERNAL_ERROR", 2)
    texts = [service.fetch(ok, "alice").message, service.fetch("1800000000,nope", "a").message,
             service.fetch(ok, "alice").message, service.lookup(ok, "alice").message]
    with Session(engine) as s:
        texts += [e.detail or "" for e in s.exec(select(AuditEvent))]
    texts.append(caplog.text)
    assert caplog.records, "the fetches should have logged something"
    assert not [t for t in texts if SECRET in t]


def test_actor_object_is_recorded_by_username(engine, service) -> None:
    who = Actor("demo.alice", "Alice", "reviewer")
    service.fetch("1800000000,unknown", who)
    with Session(engine) as s:
        event = s.exec(select(AuditEvent)).one()
    assert event.actor == "demo.alice"
    assert ledger(engine, "1800000000,unknown")[0].actor == "demo.alice"


def test_a_database_fault_when_finishing_lets_the_job_go_stale(mt_engine, sim, client, clock,
                                                               monkeypatch) -> None:
    # The result is stored, but the job's outcome cannot be written: the lease must not be
    # renewed for as long as the process lives (the job would be stuck), only run out.
    service = make_service(mt_engine, client, clock)
    biz_id = fresh(sim, clock, 150)
    service.queue.enqueue([biz_id], "x")
    claim = service.queue.claim(biz_id)

    def unreachable(*a, **kw):
        raise OSError("database away")

    monkeypatch.setattr(service.queue, "finish_many", unreachable)
    outcome = service.run_claim(claim, client)
    assert outcome.status == "stored"
    assert service.queue.held() == (set(), set())
    assert store.stored_biz_ids(mt_engine, [biz_id]) == {biz_id}
