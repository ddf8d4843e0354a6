"""The ``fetch_attempts`` ledger as the API client sees it (``LedgerLog``): one row committed
before each request goes out, so a crash mid-request still counts as a spent read, and the
deployment-wide request slot taken in the same transaction and given back with the outcome.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, update
from sqlmodel import select

from faceid.core.errors import DataDestroyed, QuotaExhausted
from faceid.core.timeutil import from_unix
from faceid.store.fetchqueue import FetchQueue
from faceid.store.quota import MAX_READS, attempt_spent
from faceid.store.tables import FetchAttempt


class LedgerLog:
    """``AttemptLog`` that commits a ``FetchAttempt`` row before each request goes out.

    ``before`` also refuses (``QuotaExhausted``) an attempt the ledger shows no read for: the
    client's own retry of an ambiguous answer must not become a 4th read. With a queue, the
    same transaction takes one of the deployment-wide request slots (waiting while all are
    held), and ``after`` gives it back with the outcome: one transaction each side of a call.
    """

    def __init__(self, engine: Engine, actor: str, clock: Callable[[], float],
                 fetch_queue: FetchQueue | None = None) -> None:
        self._engine, self._actor, self._clock = engine, actor, clock
        self._queue = fetch_queue
        self._slot: int | None = None
        #: (token, outcome, http_status) of the last attempt until its row is written.
        self._pending: tuple[Any, str, int | None] | None = None
        self.calls = 0
        self.last_outcome: str | None = None
        self.last_status: int | None = None

    def _now(self) -> datetime:
        dt = from_unix(self._clock())
        assert dt is not None
        return dt

    def before(self, biz_id: str, attempt: int) -> int:
        pause = 0.002
        if self._queue is not None:
            self._queue.ensure_slots()
        while True:
            with self._engine.begin() as conn:
                rows = conn.execute(select(_FA.outcome, _FA.http_status)
                                    .where(_FA.biz_id == biz_id)).all()
                used = sum(attempt_spent(o, h) for o, h in rows)
                if used >= MAX_READS or any(o == DataDestroyed.code for o, _ in rows):
                    raise QuotaExhausted()
                slot = None if self._queue is None else self._queue.try_slot(conn, biz_id)
                token = None
                if self._queue is None or slot is not None:
                    token = conn.execute(insert(FetchAttempt.__table__).values(
                        biz_id=biz_id, attempt=len(rows) + 1, started_at=self._now(),
                        actor=self._actor)).inserted_primary_key[0]
            if token is not None:
                if slot is not None:
                    assert self._queue is not None
                    self._queue.slot_taken(slot)
                    self._slot = slot
                self.calls += 1
                return int(token)
            # Every slot is held (here or by another process): wait for one to free. A slot
            # this process frees wakes us at once; another process's is seen by asking again.
            assert self._queue is not None
            self._queue.wait_for_slot(pause * random.uniform(0.5, 1.5))
            pause = min(pause * 2, 0.1)

    def after(self, token: Any, outcome: str, http_status: int | None) -> None:
        """Record the outcome and give the slot back. An ``OK`` waits for ``keep``: it is
        written in the transaction that commits the answer to the inbox (one commit, not
        two, while the slot is held); ``abort`` writes it if that never comes."""
        self.last_outcome, self.last_status = outcome, http_status
        self._pending = (token, outcome, http_status)
        if outcome != "OK":
            with self._engine.begin() as conn:
                self._write(conn)
            self._written()

    def keep(self, conn: Connection) -> None:
        """``store.start_ingest(also=...)``: write the pending ``OK`` beside the answer."""
        if self._pending is not None:
            self._write(conn)

    def kept(self) -> None:
        """After ``keep``'s transaction committed."""
        self._written()

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
        lives."""
        if self._slot is None and self._pending is None:
            return
        try:
            with self._engine.begin() as conn:
                if self._pending is not None:
                    self._write(conn)
                elif self._slot is not None and self._queue is not None:
                    self._queue.free_slot(conn, self._slot)
        finally:
            self._written()


_FA = FetchAttempt.__table__.c


__all__ = ["LedgerLog"]
