"""The fetch worker's batched store path (issue 11): answers committed to the inbox one by
one (with the ledger's OK and the freed slot), stored together, jobs finished together; and
the in-process SQLite writer lock that keeps writers from sleeping in SQLite's busy handler."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from faceid.store import db
from faceid.store import worker as worker_module
from faceid.store import write as store
from faceid.store.answer_batches import AnswerBatcher
from faceid.store.fetch_jobs import DONE, FAILED, QUEUED, RUNNING, Outcome
from faceid.store.fetchqueue import FetchQueue
from faceid.store.tables import (
    AuditEvent,
    FetchAttempt,
    FetchJob,
    FetchSlot,
    Inbox,
    Verification,
)
from faceid.store.worker import Worker
from tests import test_fetching
from tests.test_fetching import fresh, make_service

# The simulator, client and clock fixtures of the fetch tests.
clock, sim, client = test_fetching.clock, test_fetching.sim, test_fetching.client


@contextlib.contextmanager
def working(worker: Worker, ids: list[str]) -> Iterator[Worker]:
    """Start ``worker``, enqueue ``ids``, and yield once every job is done (then stop it)."""
    service = worker.fetcher
    worker.start()
    try:
        service.queue.enqueue(ids, "ops")
        worker.wake()
        deadline = time.monotonic() + 60
        while {j.state for j in service.queue.jobs(ids).values()} != {DONE}:
            assert time.monotonic() < deadline, "the worker did not finish its jobs"
            time.sleep(0.02)
        yield worker
    finally:
        worker.stop()


def _run_all(service, client, ids: list[str]) -> list:
    """Claim and run every id with a storer that only collects: answers in the inbox, not
    stored, jobs still held."""
    handed: list = []
    service.queue.enqueue(ids, "ops")
    for biz_id in ids:
        claim = service.queue.claim(biz_id)
        assert service.run_claim(claim, client, storer=handed.append) is None
    return handed


def test_answers_wait_in_the_inbox_until_stored_together(mt_engine, sim, client, clock,
                                                         monkeypatch) -> None:
    service = make_service(mt_engine, client, clock)
    ids = [fresh(sim, clock, 300 + i) for i in range(3)]
    handed = _run_all(service, client, ids)
    assert [r.claim.biz_id for r in handed] == ids
    with Session(mt_engine) as s:
        # Raw first: every body committed, with its ledger outcome and the slot given back.
        assert s.exec(select(func.count()).select_from(Inbox)
                      .where(Inbox.processed_at.is_(None))).one()[0] == 3
        assert [a.outcome for a in s.exec(select(FetchAttempt)).scalars()] == ["OK"] * 3
        assert s.exec(select(func.count()).select_from(FetchSlot)
                      .where(FetchSlot.holder.is_not(None))).one()[0] == 0
        assert s.exec(select(func.count()).select_from(Verification)).one()[0] == 0
    writes = []
    real = store._write
    monkeypatch.setattr(store, "_write", lambda *a, **k: writes.append(1) or real(*a, **k))
    outcomes = service.store_answers(handed)
    assert [o.status for o in outcomes] == ["stored"] * 3 and len(writes) == 1
    assert store.stored_biz_ids(mt_engine, ids) == set(ids)
    jobs = service.queue.jobs(ids)
    assert {j.state for j in jobs.values()} == {DONE}
    assert all(jobs[b].verification_id == o.verification_id for b, o in zip(ids, outcomes))
    assert service.queue.held() == (set(), set())
    with Session(mt_engine) as s:
        assert s.exec(select(func.count()).select_from(AuditEvent)
                      .where(AuditEvent.action == "fetched")).one()[0] == 3
    assert sim.state.total_requests == 3


def test_a_crash_before_the_batch_is_stored_costs_no_read(mt_engine, sim, client, clock) -> None:
    """The process dies with answers handed to the batcher but not stored: their jobs' leases
    lapse, and the next run stores each answer from the inbox without calling FaceID."""
    service = make_service(mt_engine, client, clock)
    ids = [fresh(sim, clock, 320 + i) for i in range(2)]
    handed = _run_all(service, client, ids)
    for r in handed:  # dead: no heartbeat, leases run out
        service.queue.forget(r.claim)
    with mt_engine.begin() as conn:
        conn.execute(FetchJob.__table__.update().values(lease_until=0.0))
    rerun = make_service(mt_engine, client, clock)
    summary = rerun.fetch_many(ids, "ops", concurrency=2)
    assert summary.all_ok and summary.api_calls == 0, summary.message
    assert store.stored_biz_ids(mt_engine, ids) == set(ids)
    assert sim.state.total_requests == 2


def test_a_database_fault_while_storing_a_batch_is_reported_and_lets_the_jobs_go(
        mt_engine, sim, client, clock, monkeypatch) -> None:
    service = make_service(mt_engine, client, clock)
    ids = [fresh(sim, clock, 330 + i) for i in range(2)]
    handed = _run_all(service, client, ids)

    def away(*a, **k):
        raise OperationalError("INSERT", None, Exception("server closed the connection"))

    monkeypatch.setattr(store, "_write", away)
    outcomes = service.store_answers(handed)
    assert [o.status for o in outcomes] == ["failed"] * 2
    assert all("waits in the inbox" in o.message for o in outcomes)
    assert service.queue.held() == (set(), set())  # not renewed: the leases will lapse
    assert {j.state for j in service.queue.jobs(ids).values()} == {RUNNING}


def test_the_batcher_stores_what_arrived_together_and_everything_on_close() -> None:
    calls: list[list[int]] = []
    done: list[tuple[int, str]] = []
    gate = threading.Event()

    def store_answers(batch):
        gate.wait(5)
        calls.append(list(batch))
        return [f"ok{i}" for i in batch]

    batcher = AnswerBatcher(store_answers, lambda r, o: done.append((r, o)), max_batch=4,
                            linger_s=0.0)
    for i in range(6):
        batcher.put(i)  # type: ignore[arg-type]
    batcher.start()
    gate.set()
    batcher.close(5)
    assert calls == [[0, 1, 2, 3], [4, 5]]
    assert done == [(i, f"ok{i}") for i in range(6)]


def test_a_flush_stores_a_lingering_batch_at_once() -> None:
    calls: list[list[int]] = []
    stored = threading.Event()

    def store_answers(batch):
        calls.append(list(batch))
        stored.set()
        return ["ok" for _ in batch]

    # Without the flush this batch would wait 30 s for more answers.
    batcher = AnswerBatcher(store_answers, linger_s=30.0).start()
    try:
        batcher.flush()  # nothing waiting: a no-op
        batcher.put(1)  # type: ignore[arg-type]
        batcher.put(2)  # type: ignore[arg-type]
        batcher.flush()
        assert stored.wait(5), "the flushed batch was not stored"
        assert calls == [[1, 2]]
        batcher.put(3)  # type: ignore[arg-type]
    finally:
        batcher.close(5)
    assert calls == [[1, 2], [3]]


def test_an_idle_worker_does_not_hold_its_last_answers_for_more(mt_engine, sim, client, clock,
                                                                monkeypatch) -> None:
    # A batch would wait 30 s for more answers: the flush, not the linger, ends it.
    monkeypatch.setattr(worker_module, "AnswerBatcher",
                        functools.partial(AnswerBatcher, linger_s=30.0))
    service = make_service(mt_engine, client, clock)
    ids = [fresh(sim, clock, 360 + i) for i in range(3)]
    worker = Worker(service, idle_s=0.02, store_process=False)
    started = time.monotonic()
    with working(worker, ids):
        pass
    assert time.monotonic() - started < 20
    assert store.stored_biz_ids(mt_engine, ids) == set(ids)


def test_the_worker_stores_in_batches_and_finishes_every_job(mt_engine, sim, client,
                                                             clock) -> None:
    service = make_service(mt_engine, client, clock)
    ids = [fresh(sim, clock, 340 + i) for i in range(12)]
    worker = Worker(service, idle_s=0.02)
    with working(worker, ids):
        batches = worker._answers.batches if worker._answers else 0
    assert {j.state for j in service.queue.jobs(ids).values()} == {DONE}
    assert store.stored_biz_ids(mt_engine, ids) == set(ids)
    assert 1 <= batches <= 12
    assert sim.state.total_requests == 12


def test_finish_many_records_each_outcome_in_one_transaction(mt_engine) -> None:
    q = FetchQueue(mt_engine, cap=2)
    ids = ["b-ok", "b-retry", "b-final"]
    q.enqueue(ids, "ops", refetch=True, max_tries=3)
    with mt_engine.begin() as conn:  # a callback waits on b-final
        conn.execute(Inbox.__table__.insert().values(
            biz_id="b-final", source="notify", received_at=db_utc(), body=b"{}",
            body_sha256="0" * 64))
    claims = {b: q.claim(b) for b in ids}
    finished = q.finish_many([
        Outcome(claims["b-ok"], True, "stored", "Fetched.", "OK", 200, None),
        Outcome(claims["b-retry"], False, "failed", "Network.", "NETWORK_ERROR", None,
                retry_in_s=30.0),
        Outcome(claims["b-final"], False, "failed", "Refused.", "AUTH", 401),
    ])
    assert [f.state for f in finished] == [DONE, QUEUED, FAILED]
    assert [f.callbacks_waiting for f in finished] == [False, False, True]
    jobs = q.jobs(ids)
    with mt_engine.connect() as conn:  # a failed refetch is still wanted; a done one is not
        refetch = dict(conn.execute(select(FetchJob.biz_id, FetchJob.refetch)).all())
    assert refetch == {"b-ok": False, "b-retry": True, "b-final": True}
    assert jobs["b-retry"].not_before is not None and jobs["b-retry"].not_before > q.db_time()
    assert jobs["b-final"].not_before is None
    assert jobs["b-final"].last_http_status == 401 and jobs["b-ok"].last_code == "OK"
    assert q.held() == (set(), set())


def db_utc():
    from faceid.core.timeutil import utcnow
    return utcnow()


def test_states_reads_a_batch_as_one_biz_id_at_a_time_would(mt_engine, sim, client,
                                                           clock) -> None:
    service = make_service(mt_engine, client, clock)
    stored, spent, left, new = (fresh(sim, clock, 350 + i) for i in range(4))
    service.fetch(stored, "ops")
    with mt_engine.begin() as conn:
        conn.execute(FetchAttempt.__table__.insert(), [
            {"biz_id": spent, "attempt": 1, "started_at": db_utc(), "outcome": "OK",
             "http_status": 200, "actor": "x"},
            {"biz_id": spent, "attempt": 2, "started_at": db_utc(), "outcome": None,
             "http_status": None, "actor": "x"}])
    store.receive(mt_engine, b"{}", source="api", biz_id=left)
    batch = service.states([stored, spent, left, new])
    for biz_id in (stored, spent, left, new):
        one = service.state(biz_id)
        quota = service.quota(biz_id)  # the ledger read on its own
        st = batch[biz_id]
        assert (st.verification_id, st.stored_sha256) == (one.verification_id,
                                                          one.stored_sha256)
        assert (st.quota.reads_used, st.quota.attempts) == (quota.reads_used, quota.attempts)
        assert st.leftover == one.leftover
    assert batch[stored].verification_id is not None and batch[spent].quota.reads_used == 2
    assert batch[left].leftover is not None and batch[new].leftover is None


# --------------------------------------------------------------------------- SQLite writer lock


def test_writers_of_one_process_take_turns_without_sqlite_busy_sleeps(tmp_path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path}/w.db")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for _ in range(30):
                with engine.begin() as conn:
                    conn.execute(text("INSERT INTO t VALUES (1)"))
        except BaseException as exc:  # pragma: no cover - the assertion shows it
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 240
    engine.dispose()


def test_the_writer_lock_is_given_back_on_rollback_and_times_out_like_sqlite(
        tmp_path, monkeypatch) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path}/w.db")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    with pytest.raises(ZeroDivisionError), engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
        1 / 0
    with engine.begin() as conn:  # the failed transaction let the lock go
        conn.execute(text("INSERT INTO t VALUES (2)"))
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_S", 0.2)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (3)"))
        # A second writer while this one holds the lock: refused as SQLite would refuse it.
        with pytest.raises(OperationalError, match="database is locked"), \
                engine.begin() as other:
            other.execute(text("INSERT INTO t VALUES (4)"))
        # Reads never take it.
        with db.reader(engine).connect() as r:
            assert r.execute(text("SELECT count(*) FROM t")).scalar() == 1
    with engine.connect() as conn:
        assert sorted(conn.execute(text("SELECT n FROM t")).scalars()) == [2, 3]
    engine.dispose()


def test_a_database_fault_when_recording_an_attempt_never_leaves_its_slot_renewed(
        mt_engine, monkeypatch) -> None:
    """``after`` cannot write (the database is away) and neither can ``abort``: the slot must
    not stay in the heartbeat's set for as long as the process lives; its lease runs out."""
    from faceid.store.ledger import LedgerLog

    q = FetchQueue(mt_engine, cap=1)
    ledger = LedgerLog(mt_engine, "ops", time.time, q)
    token = ledger.before("b-1", 1)
    assert q.held()[1] == {0}

    class Away:
        def begin(self):
            raise OperationalError("BEGIN", None, Exception("server closed the connection"))

    monkeypatch.setattr(ledger, "_engine", Away())
    with pytest.raises(OperationalError):
        ledger.after(token, "NETWORK_ERROR", None)
    assert q.held()[1] == {0}  # still ours: abort tries again
    with pytest.raises(OperationalError):
        ledger.abort()
    assert q.held() == (set(), set())
    monkeypatch.undo()
    ledger.abort()  # nothing left to do


def test_abort_writes_a_pending_ok_and_frees_the_slot(mt_engine) -> None:
    from faceid.store.ledger import LedgerLog

    q = FetchQueue(mt_engine, cap=1)
    ledger = LedgerLog(mt_engine, "ops", time.time, q)
    token = ledger.before("b-2", 1)
    ledger.after(token, "OK", 200)  # waits for keep, which never comes
    ledger.abort()
    with Session(mt_engine) as s:
        assert s.exec(select(FetchAttempt.outcome, FetchAttempt.http_status)).all() == [
            ("OK", 200)]
        assert s.exec(select(func.count()).select_from(FetchSlot)
                      .where(FetchSlot.holder.is_not(None))).one()[0] == 0
    assert q.held() == (set(), set())
