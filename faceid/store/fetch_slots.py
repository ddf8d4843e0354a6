"""The deployment-wide request slots (``fetch_slots``): a request is sent only while holding
one of ``FACEID_MAX_CONCURRENCY`` slot rows, taken in the ledger's transaction
(``faceid.store.ledger``) and given back with the outcome. The slot half of ``FetchQueue``,
which mixes ``RequestSlots`` in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, or_, select, update

from faceid.store.tables import FetchSlot

S = FetchSlot.__table__.c


class RequestSlots:
    """The request-slot half of ``FetchQueue`` (mixed into it; ``FetchQueue.__init__`` sets the
    attributes below, and ``FetchQueue`` defines the methods typed here)."""

    engine: Engine
    cap: int
    owner: str
    lease_s: float
    _slots_ready: bool
    _slot_freed: threading.Condition
    _now: Callable[[], Any]
    _insert: Callable[[Any], Any]
    _hold: Callable[..., None]
    _let_go: Callable[..., None]

    def ensure_slots(self) -> None:
        """Create the slot rows this cap uses, once per process, in a transaction of its own
        (inside the caller's, a rollback would undo them behind our back)."""
        if self._slots_ready:
            return
        with self.engine.begin() as conn:
            conn.execute(self._insert(FetchSlot.__table__).values(
                [{"slot": i} for i in range(self.cap)]).on_conflict_do_nothing(
                    index_elements=["slot"]))
        self._slots_ready = True

    def try_slot(self, conn: Connection, biz_id: str) -> int | None:
        """Take a free request slot inside the caller's transaction (the ledger row goes in
        the same one); None when all ``cap`` slots are held by live leases. Call
        ``ensure_slots`` before that transaction begins, ``slot_taken`` after it commits."""
        now = self._now()
        free = or_(S.holder.is_(None), S.lease_until < now)
        pick = (select(S.slot).where(S.slot < self.cap, free).order_by(S.slot).limit(1)
                .with_for_update(skip_locked=True).cte("pick")
                .prefix_with("MATERIALIZED", dialect="postgresql"))
        slot = conn.execute(update(FetchSlot.__table__).where(S.slot == pick.c.slot, free)
                            .values(holder=self.owner, biz_id=biz_id, acquired_at=now,
                                    lease_until=now + self.lease_s)
                            .returning(S.slot)).scalar()
        return None if slot is None else int(slot)

    def slot_taken(self, slot: int) -> None:
        """After the taking transaction committed: renew the slot's lease from now on."""
        self._hold(slots=[slot])

    def move_slot(self, conn: Connection, slot: int, biz_id: str) -> None:
        """Inside the caller's transaction, record that a slot this process holds now serves
        ``biz_id`` (``LedgerLog.pass_slot`` handed it over). Which request a slot serves is
        for the queue's status only; a slot no longer ours (its lease lapsed and another
        process took it) is left as that process wrote it."""
        now = self._now()
        conn.execute(update(FetchSlot.__table__)
                     .where(S.slot == slot, S.holder == self.owner)
                     .values(biz_id=biz_id, acquired_at=now, lease_until=now + self.lease_s))

    def free_slot(self, conn: Connection, slot: int) -> None:
        """Give a slot back inside the caller's transaction (with the ledger's outcome)."""
        conn.execute(update(FetchSlot.__table__)
                     .where(S.slot == slot, S.holder == self.owner)
                     .values(holder=None, biz_id=None, acquired_at=None, lease_until=None))

    def slot_freed(self, slot: int) -> None:
        """After the freeing transaction committed: wake this process's waiting threads."""
        self._let_go(slots=[slot])
        with self._slot_freed:
            self._slot_freed.notify_all()

    def wait_for_slot(self, timeout: float) -> None:
        """Sleep until a slot of this process frees or ``timeout`` passes (another process's
        release is only seen by trying again)."""
        with self._slot_freed:
            self._slot_freed.wait(timeout)


__all__ = ["RequestSlots"]
