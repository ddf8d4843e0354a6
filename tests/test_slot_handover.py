"""A request slot handed from one request to the next of the same process (decision 29): the
gate's permits, the ledger's early announce and hand-over, the worker using both, and the
SQLite writer queue that lets slot-holding transactions go first."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select, text
from sqlmodel import Session

from faceid.core.errors import QuotaExhausted
from faceid.store import db
from faceid.store import write as store
from faceid.store.fetch_jobs import DONE
from faceid.store.fetchqueue import FetchQueue
from faceid.store.ledger import LedgerLog
from faceid.store.slot_gate import SlotGate, Stopped
from faceid.store.tables import FetchAttempt, FetchSlot
from faceid.store.worker import Worker
from tests import test_fetching
from tests.test_answer_batches import working
from tests.test_fetching import fresh, make_service

clock, sim, client = test_fetching.clock, test_fetching.sim, test_fetching.client


def _until(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _waiting(gate: SlotGate) -> int:
    return gate.waiting


# --------------------------------------------------------------------------- the gate


def test_a_free_permit_is_taken_at_once_without_the_before_wait_step() -> None:
    gate, calls = SlotGate(2), []
    with gate.hold("a", before_wait=lambda: calls.append("a")), \
            gate.hold("b", before_wait=lambda: calls.append("b")):
        assert gate._free == 0
    assert calls == [] and gate._free == 2


def test_a_waiter_announces_first_and_takes_the_permit_passed_on_mid_hold() -> None:
    gate = SlotGate(1)
    steps: list[str] = []
    b_in, b_done = threading.Event(), threading.Event()

    def b() -> None:
        with gate.hold("ledger-b", before_wait=lambda: steps.append("b announces")):
            steps.append("b sends")
            b_in.set()
            b_done.wait(5)

    with gate.hold("ledger-a") as held:
        t = threading.Thread(target=b)
        t.start()
        _until(lambda: _waiting(gate) == 1)
        assert steps == ["b announces"]
        given: list[object] = []
        assert held.pass_on(given.append) is True
        assert given == ["ledger-b"]  # handed its slot before being let go
        assert b_in.wait(5)  # b sends while a is still committing its answer
        assert gate._free == 0  # the permit moved: never free in between
        assert held.pass_on(given.append) is False  # once only
    assert gate._free == 0  # a's hold ended without giving back the permit it passed on
    b_done.set()
    t.join(5)
    assert steps == ["b announces", "b sends"] and gate._free == 1


def test_waiters_are_served_first_come_first_served() -> None:
    gate, order = SlotGate(1), []

    def waiter(name: str) -> None:
        with gate.hold():
            order.append(name)

    threads = []
    with gate.hold():
        for name in "xyz":
            threads.append(threading.Thread(target=waiter, args=(name,)))
            threads[-1].start()
            _until(lambda n=len(threads): _waiting(gate) == n)
    for t in threads:
        t.join(5)
    assert order == ["x", "y", "z"] and gate._free == 1


def test_a_before_wait_step_that_raises_holds_nothing() -> None:
    gate = SlotGate(1)

    def refuse() -> None:
        raise QuotaExhausted()

    with gate.hold():
        with pytest.raises(QuotaExhausted), gate.hold("b", before_wait=refuse):
            pytest.fail("must not get in")  # pragma: no cover
        assert _waiting(gate) == 0
    assert gate._free == 1


def test_a_fatal_error_stops_the_gate_before_the_permit_moves_on() -> None:
    stop = threading.Event()
    gate = SlotGate(1, stop=stop, fatal=(PermissionError,))
    seen: list[str] = []

    def waiter() -> None:
        try:
            with gate.hold():
                seen.append("sent")  # pragma: no cover - the assertion shows it
        except Stopped:
            seen.append("stopped")

    t = threading.Thread(target=waiter)
    with pytest.raises(PermissionError), gate.hold():
        t.start()
        _until(lambda: _waiting(gate) == 1)
        raise PermissionError("bad credentials")
    t.join(5)
    assert seen == ["stopped"] and stop.is_set() and gate._free == 1
    with pytest.raises(Stopped), gate.hold():
        pass  # pragma: no cover


# --------------------------------------------------------------------------- the ledger


def _slot_rows(engine) -> list[tuple]:
    with Session(engine) as s:
        return [tuple(r) for r in s.exec(select(FetchSlot.slot, FetchSlot.holder,
                                                FetchSlot.biz_id)
                                         .order_by(FetchSlot.slot)).all()]


def _attempts(engine, biz_id: str) -> list[tuple]:
    with Session(engine) as s:
        return [tuple(r) for r in s.exec(select(FetchAttempt.attempt, FetchAttempt.outcome)
                                         .where(FetchAttempt.biz_id == biz_id)
                                         .order_by(FetchAttempt.id)).all()]


class _Away:
    """An engine that is gone: proves a step writes nothing."""

    def begin(self):
        raise AssertionError("no transaction expected here")


def test_a_slot_passes_to_an_announced_request_with_no_write_between(mt_engine,
                                                                     monkeypatch) -> None:
    q = FetchQueue(mt_engine, cap=1)
    a = LedgerLog(mt_engine, "ops", time.time, q, biz_id="a")
    b = LedgerLog(mt_engine, "ops", time.time, q, biz_id="b")
    token_a = a.before("a", 1)
    b.announce_early()  # while a's request is out: b's attempt is committed, no slot yet
    assert _attempts(mt_engine, "b") == [(1, None)]
    a.after(token_a, "OK", 200)
    a.pass_slot(b)
    monkeypatch.setattr(b, "_engine", _Away())
    token_b = b.before("b", 1)  # goes out at once: no transaction
    monkeypatch.undo()
    assert b.calls == 1 and q.held()[1] == {0}  # still this process's, still renewed
    with mt_engine.begin() as conn:  # a's answer commit (start_ingest's also=)
        a.keep(conn)
    a.kept()
    a.abort()  # nothing left for a: must not free b's slot
    assert _attempts(mt_engine, "a") == [(1, "OK")]
    assert _slot_rows(mt_engine) == [(0, q.owner, "b")]
    b.after(token_b, "RESULT_NOT_FOUND", 404)  # a final answer: the slot is given back
    assert _slot_rows(mt_engine) == [(0, None, None)]
    assert q.held() == (set(), set())
    assert _attempts(mt_engine, "b") == [(1, "RESULT_NOT_FOUND")]


def test_an_announced_request_never_sent_is_struck_from_the_ledger(mt_engine) -> None:
    q = FetchQueue(mt_engine, cap=1)
    a = LedgerLog(mt_engine, "ops", time.time, q, biz_id="a")
    b = LedgerLog(mt_engine, "ops", time.time, q, biz_id="b")
    token_a = a.before("a", 1)
    b.announce_early()
    a.after(token_a, "OK", 200)
    a.pass_slot(b)
    b.abort()  # stopped before sending: it spent no read, and the slot is let go
    assert _attempts(mt_engine, "b") == []
    assert _slot_rows(mt_engine) == [(0, None, None)]
    assert q.held() == (set(), set())


def test_an_announced_request_given_a_fresh_permit_takes_a_slot_itself(mt_engine) -> None:
    q = FetchQueue(mt_engine, cap=2)
    b = LedgerLog(mt_engine, "ops", time.time, q, biz_id="b")
    b.announce_early()
    token = b.before("b", 1)
    assert b.calls == 1 and _attempts(mt_engine, "b") == [(1, None)]
    assert [(s, h, z) for s, h, z in _slot_rows(mt_engine) if h] == [(0, q.owner, "b")]
    b.after(token, "OK", 200)
    b.abort()
    assert q.held() == (set(), set()) and _attempts(mt_engine, "b") == [(1, "OK")]


def test_announce_early_refuses_when_the_ledger_shows_no_read_left(mt_engine) -> None:
    q = FetchQueue(mt_engine, cap=1)
    with mt_engine.begin() as conn:
        for n in (1, 2, 3):
            conn.execute(FetchAttempt.__table__.insert().values(
                biz_id="b", attempt=n, outcome="OK", http_status=200,
                started_at=db_now(), actor="ops"))
    b = LedgerLog(mt_engine, "ops", time.time, q, biz_id="b")
    with pytest.raises(QuotaExhausted):
        b.announce_early()
    assert len(_attempts(mt_engine, "b")) == 3


def test_a_slot_is_not_passed_to_a_request_with_nothing_announced(mt_engine) -> None:
    q = FetchQueue(mt_engine, cap=1)
    a = LedgerLog(mt_engine, "ops", time.time, q, biz_id="a")
    b = LedgerLog(mt_engine, "ops", time.time, q, biz_id="b")
    token_a = a.before("a", 1)
    a.after(token_a, "OK", 200)
    a.pass_slot(b)  # b committed no attempt: it would take a slot of its own
    assert b._slot is None
    with mt_engine.begin() as conn:
        a.keep(conn)
    a.kept()
    assert _slot_rows(mt_engine) == [(0, None, None)] and q.held() == (set(), set())


def db_now():
    from faceid.core.timeutil import utcnow

    return utcnow()


# --------------------------------------------------------------------------- the worker


def test_the_worker_hands_slots_on_and_keeps_every_guarantee(mt_engine, sim, client, clock,
                                                             monkeypatch) -> None:
    """Two slots, twelve jobs, answers that take 50 ms: most requests go out on a slot handed
    over (far fewer slot takes than requests), yet each biz_id is read once, never more than
    two requests are in flight, every attempt has its outcome and every slot ends free."""
    sim.state.latency_s = 0.05
    service = make_service(mt_engine, client, clock)
    service.queue.cap = 2
    takes = []
    real = FetchQueue.try_slot
    monkeypatch.setattr(FetchQueue, "try_slot",
                        lambda self, conn, biz_id: takes.append(biz_id) or real(self, conn,
                                                                                biz_id))
    ids = [fresh(sim, clock, 400 + i) for i in range(12)]
    with working(Worker(service, idle_s=0.02), ids):
        pass
    assert store.stored_biz_ids(mt_engine, ids) == set(ids)
    assert sim.state.total_requests == 12 and sim.state.max_in_flight <= 2
    assert len(takes) < 12  # the rest went out on a slot handed over
    with Session(mt_engine) as s:
        assert s.exec(select(FetchAttempt.outcome, func.count()).group_by(
            FetchAttempt.outcome)).all() == [("OK", 12)]
    assert _slot_rows(mt_engine) == [(0, None, None), (1, None, None)]
    assert service.queue.held() == (set(), set())


# --------------------------------------------------------------------------- SQLite writers


def test_urgent_writers_go_before_writers_already_waiting() -> None:
    lock, order = db.WriterQueue(), []
    assert lock.acquire()

    def take(name: str, urgent: bool) -> None:
        assert lock.acquire(timeout=5, urgent=urgent)
        order.append(name)
        lock.release()

    normal = threading.Thread(target=take, args=("store batch", False))
    normal.start()
    time.sleep(0.1)  # the batch is waiting first
    urgent = threading.Thread(target=take, args=("slot holder", True))
    urgent.start()
    _until(lambda: lock._urgent_waiting == 1)
    lock.release()
    normal.join(5)
    urgent.join(5)
    assert order == ["slot holder", "store batch"]
    assert not lock.acquire(timeout=0.05) or lock.release() is None


def test_urgent_marks_the_transactions_begun_inside(tmp_path, monkeypatch) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path}/u.db")
    seen: list[bool] = []
    real = db.WriterQueue.acquire
    me = threading.get_ident()

    def acquire(self, timeout=-1, urgent=False):
        # This thread's only: a thread another test left behind may write to its own file.
        if threading.get_ident() == me:
            seen.append(urgent)
        return real(self, timeout, urgent)

    monkeypatch.setattr(db.WriterQueue, "acquire", acquire)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    with db.urgent(), engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (2)"))
    assert seen == [False, True, False]
    engine.dispose()


# --------------------------------------------------------------------------- a batch's attempts


def test_a_claimed_batch_announces_only_the_jobs_that_will_read(mt_engine, sim, client,
                                                                clock) -> None:
    """The worker's dispatcher commits the first attempts of its batch in one transaction:
    not for a stored case, a refetch or a biz_id with no read left; and an attempt announced
    for a job that then needs no read (stored meanwhile) is struck when its run ends."""
    service = make_service(mt_engine, client, clock)
    new, stored, spent, again = (fresh(sim, clock, 500 + i) for i in range(4))
    service.fetch(stored, "ops")
    with mt_engine.begin() as conn:
        for n in (1, 2, 3):
            conn.execute(FetchAttempt.__table__.insert().values(
                biz_id=spent, attempt=n, outcome="OK", http_status=200,
                started_at=db_now(), actor="ops"))
    service.queue.enqueue([new, stored, spent], "ops")
    service.queue.enqueue([again], "ops", refetch=True)
    claims = service.queue.claim_batch(4)
    states = service.states([c.biz_id for c in claims])
    ledgers = service.announce(claims, states)
    assert set(ledgers) == {new}
    assert ledgers[new].announced and _attempts(mt_engine, new) == [(1, None)]
    # The run learns the case is stored after all: no read, and the attempt is struck.
    (claim,) = [c for c in claims if c.biz_id == new]
    already = states[stored]
    outcome = service.run_claim(claim, client, state=already, ledger=ledgers[new])
    assert outcome is not None and outcome.api_calls == 0
    assert _attempts(mt_engine, new) == []
    assert sim.state.total_requests == 1  # the one fetch of `stored`
    for c in claims:
        if c.biz_id != new:
            service.queue.release(c)
    assert service.queue.held() == (set(), set())


def test_the_worker_claims_a_batch_ahead_of_its_threads_and_no_more(mt_engine, sim, client,
                                                                    clock) -> None:
    """One run thread and two slots: at most a batch as big as the cap waits in the worker
    for its thread (claimed, attempt committed), so other workers can still take the rest."""
    sim.state.latency_s = 0.3
    service = make_service(mt_engine, client, clock)
    service.queue.cap = 2
    ids = [fresh(sim, clock, 600 + i) for i in range(8)]
    worker = Worker(service, threads=1, idle_s=0.02)
    assert worker.ahead == 2
    worker.start()
    try:
        service.queue.enqueue(ids, "ops")
        worker.wake()
        waiting, running = [], []
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            waiting.append(worker._jobs.qsize())
            running.append(sum(1 for j in service.queue.jobs(ids).values()
                               if j.state == "running"))
            time.sleep(0.02)
        assert max(waiting) == 2  # filled, never more
        assert max(running) < len(ids)  # no hoarding: the rest stays claimable
    finally:
        worker.stop()
    jobs = service.queue.jobs(ids)
    # Stopped: the jobs it had claimed but not started were given back, their attempts struck.
    assert all(j.state != "running" for j in jobs.values())
    with Session(mt_engine) as s:
        unsent = s.exec(select(func.count()).select_from(FetchAttempt)
                        .where(FetchAttempt.outcome.is_(None))).one()[0]
    assert unsent == 0
    assert sim.state.total_requests == sum(1 for j in jobs.values() if j.state == DONE)
