"""The ``fetch_attempts`` ledger as the API client sees it (``LedgerLog``): one row committed
before each request goes out, so a crash mid-request still counts as a spent read, and the
deployment-wide request slot taken in the same transaction and given back with the outcome,
or handed straight to the next request of this process that waits for one (decision 29).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, update
from sqlmodel import select

from faceid.core.errors import DataDestroyed, QuotaExhausted
from faceid.core.timeutil import from_unix
from faceid.store.db import insert_numbered, urgent
from faceid.store.fetchqueue import FetchQueue
from faceid.store.quota import MAX_READS, attempt_spent
from faceid.store.tables import FetchAttempt


class LedgerLog:
    """``AttemptLog`` that commits a ``FetchAttempt`` row before each request goes out.

    ``before`` also refuses (``QuotaExhausted``) an attempt the ledger shows no read for: the
    client's own retry of an ambiguous answer must not become a 4th read. With a queue, the
    same transaction takes one of the deployment-wide request slots (waiting while all are
    held), and ``after`` gives it back with the outcome: one transaction each side of a call.
    A request that waits for a slot of its process commits its attempt first
    (``announce_early``) and is handed the slot of the answer before it (``pass_slot``): no
    transaction at all between the two calls on that slot.
    """

    def __init__(self, engine: Engine, actor: str, clock: Callable[[], float],
                 fetch_queue: FetchQueue | None = None, *, biz_id: str | None = None) -> None:
        self._engine, self._actor, self._clock = engine, actor, clock
        self._queue = fetch_queue
        #: The biz_id this log is for (``announce_early`` needs it).
        self.biz_id = biz_id
        self._slot: int | None = None
        #: (token, outcome, http_status) of the last attempt until its row is written.
        self._pending: tuple[Any, str, int | None] | None = None
        #: The first attempt, committed by ``announce_early`` and not sent yet.
        self._early: int | None = None
        #: (slot, biz_id of the request it went to) once ``pass_slot`` handed it on.
        self._passed: tuple[int, str] | None = None
        self.calls = 0
        self.last_outcome: str | None = None
        self.last_status: int | None = None

    def _now(self) -> datetime:
        dt = from_unix(self._clock())
        assert dt is not None
        return dt

    def before(self, biz_id: str, attempt: int) -> int:
        if self._early is not None and attempt == 1 and biz_id == self.biz_id:
            # Committed while we waited for the gate, and usually handed a slot with the
            # permit (``pass_slot``): nothing to write between the last answer and this call.
            token, self._early = self._early, None
            if self._slot is None and self._queue is not None:
                self._slot = self._take_slot(biz_id)
            self.calls += 1
            return token
        if self._queue is not None:
            self._queue.ensure_slots()
        pause = 0.002
        while True:
            with urgent(), self._engine.begin() as conn:
                number = self._guard(conn, biz_id)
                slot = None if self._queue is None else self._queue.try_slot(conn, biz_id)
                token = None
                if self._queue is None or slot is not None:
                    token = self._insert(conn, biz_id, number)
            if token is not None:
                if slot is not None:
                    assert self._queue is not None
                    self._queue.slot_taken(slot)
                    self._slot = slot
                self.calls += 1
                return token
            pause = self._wait_for_slot(pause)

    def _guard(self, conn: Connection, biz_id: str) -> int:
        """The next attempt's number; ``QuotaExhausted`` if the ledger shows no read left
        (the client's own retry of an ambiguous answer must not become a 4th read)."""
        rows = conn.execute(select(_FA.outcome, _FA.http_status)
                            .where(_FA.biz_id == biz_id)).all()
        used = sum(attempt_spent(o, h) for o, h in rows)
        if used >= MAX_READS or any(o == DataDestroyed.code for o, _ in rows):
            raise QuotaExhausted()
        return len(rows) + 1

    def _insert(self, conn: Connection, biz_id: str, number: int) -> int:
        return int(conn.execute(insert(FetchAttempt.__table__).values(
            biz_id=biz_id, attempt=number, started_at=self._now(),
            actor=self._actor)).inserted_primary_key[0])

    def _wait_for_slot(self, pause: float) -> float:
        """Every slot is held (here or by another process): wait for one to free, and return
        the next pause. A slot this process frees wakes us at once; another process's is
        seen by asking again."""
        assert self._queue is not None
        self._queue.wait_for_slot(pause * random.uniform(0.5, 1.5))
        return min(pause * 2, 0.1)

    def after(self, token: Any, outcome: str, http_status: int | None) -> None:
        """Record the outcome and give the slot back. An ``OK`` waits for ``keep``: it is
        written in the transaction that commits the answer to the inbox (one commit, not
        two, while the slot is held); ``abort`` writes it if that never comes."""
        self.last_outcome, self.last_status = outcome, http_status
        self._pending = (token, outcome, http_status)
        if outcome != "OK":
            with urgent(), self._engine.begin() as conn:
                self._write(conn)
            self._written()

    @classmethod
    def announce_batch(cls, engine: Engine, clock: Callable[[], float],
                       fetch_queue: FetchQueue | None,
                       first: list[tuple[str, str, int]]) -> dict[str, LedgerLog]:
        """``announce_early`` for a claimed batch in one transaction: (biz_id, actor, attempt
        number from the ledger the caller just read) each. The caller holds the jobs' leases,
        so nobody else adds attempts meanwhile. One log per biz_id, its attempt committed."""
        if not first:
            return {}
        logs = {biz: cls(engine, actor, clock, fetch_queue, biz_id=biz)
                for biz, actor, _ in first}
        with urgent(), engine.begin() as conn:
            ids = insert_numbered(conn, FetchAttempt.__table__, [
                {"biz_id": biz, "attempt": number, "started_at": logs[biz]._now(),
                 "actor": actor, "outcome": None, "http_status": None, "finished_at": None}
                for biz, actor, number in first])
        for (biz, _, _), token in zip(first, ids, strict=True):
            logs[biz]._early = token
        return logs

    @property
    def announced(self) -> bool:
        """The first attempt is committed and not sent yet."""
        return self._early is not None

    def announce_early(self) -> None:
        """Commit the first attempt now, while this request waits for a slot of this process
        (``SlotGate.hold(before_wait=...)``), so that when a slot is handed over it is sent
        with no write in between. The same guard as ``before`` (``QuotaExhausted``). Should
        the process die before sending, the row counts as a spent read, as a crash between
        ``before`` and the send always did: the ledger may over-count, never under-count."""
        assert self.biz_id is not None and self._early is None
        with urgent(), self._engine.begin() as conn:
            token = self._insert(conn, self.biz_id, self._guard(conn, self.biz_id))
        self._early = token

    def pass_slot(self, successor: LedgerLog | None) -> None:
        """The answer is in: hand the slot (still held in the database, still renewed) to a
        waiting request of this process whose attempt is committed (``announce_early``);
        ``keep`` then records the move on the slot row. Else the slot is given back there."""
        if (self._slot is None or successor is None or successor.biz_id is None
                or not successor.announced):
            return
        successor._slot, self._slot = self._slot, None
        self._passed = (successor._slot, successor.biz_id)

    def keep(self, conn: Connection) -> None:
        """``store.start_ingest(also=...)``: write the pending ``OK`` beside the answer (and
        give the slot back, unless it was passed on)."""
        if self._pending is not None:
            self._write(conn)
        if self._passed is not None and self._queue is not None:
            # Which request a slot serves is for the queue's status; the holder is unchanged.
            self._queue.move_slot(conn, *self._passed)

    def kept(self) -> None:
        """After ``keep``'s transaction committed."""
        self._passed = None
        self._written()

    def _take_slot(self, biz_id: str) -> int | None:
        """A slot for an attempt ``announce_early`` committed, when none was handed over."""
        assert self._queue is not None
        self._queue.ensure_slots()
        pause = 0.002
        while True:
            with urgent(), self._engine.begin() as conn:
                slot = self._queue.try_slot(conn, biz_id)
            if slot is not None:
                self._queue.slot_taken(slot)
                return slot
            pause = self._wait_for_slot(pause)

    def _write(self, conn: Connection) -> None:
        assert self._pending is not None
        token, outcome, http_status = self._pending
        conn.execute(update(FetchAttempt.__table__).where(_FA.id == token).values(
            outcome=outcome, http_status=http_status, finished_at=self._now()))
        if self._slot is not None and self._queue is not None:
            self._queue.free_slot(conn, self._slot)

    def _written(self) -> None:
        """The outcome is written, or ``abort`` gave up on it: the slot is no longer ours to
        renew (if its row could not be freed, its lease runs out), and this process's
        threads waiting for a slot are woken."""
        self._pending = None
        slot, self._slot = self._slot, None
        if slot is not None and self._queue is not None:
            self._queue.slot_freed(slot)

    def abort(self) -> None:
        """Write an outcome and free a slot that were left pending (an unexpected exception
        mid-call, an answer that never reached ``keep``, a database fault in ``after``).
        Whatever happens here, the slot is let go: never renewed for as long as this process
        lives. A first attempt ``announce_early`` committed but never sent (the thread was
        stopped first) is struck from the ledger: it spent no read."""
        self._passed = None  # passed on: the slot is the other request's, whatever happens
        early, self._early = self._early, None
        if self._slot is None and self._pending is None and early is None:
            return
        try:
            with urgent(), self._engine.begin() as conn:
                if early is not None:
                    conn.execute(delete(FetchAttempt.__table__).where(_FA.id == early))
                if self._pending is not None:
                    self._write(conn)
                elif self._slot is not None and self._queue is not None:
                    self._queue.free_slot(conn, self._slot)
        finally:
            self._written()


_FA = FetchAttempt.__table__.c


__all__ = ["LedgerLog"]
