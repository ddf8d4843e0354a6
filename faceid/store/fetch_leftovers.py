"""Answers and callbacks waiting in the inbox for a fetch to finish: the bodies an
interrupted run received but never stored (stored now, never read again), and the notify
callbacks of a biz_id whose fetch is final. A mixin of ``FetchService``, like ``fetch_reads``.
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from faceid.core.config import Settings
from faceid.store import write as store
from faceid.store.fetch_jobs import RUNNING
from faceid.store.fetchqueue import FetchQueue
from faceid.store.tables import FetchJob, Inbox


class Leftovers:
    """The inbox half of ``FetchService`` (it sets these attributes)."""

    engine: Engine
    _reader: Engine
    _settings: Settings
    queue: FetchQueue

    def finish_received_answers(self) -> int:
        """Store FaceID answers an interrupted run received but never stored; return how many
        became cases. Callbacks are left alone: they wait for their fetch (with images).

        First the leases of processes of this machine that are gone are ended: a rerun after
        ``kill -9`` takes the dead run's jobs, and the answers it left, over at once."""
        self.queue.reap()
        now = self.queue.db_time()
        # A body whose job is held by a live lease is its holder's to store (between its
        # receive and its process): taking it would only make that run report it as "already
        # stored". One left by a dead or finished holder is ours.
        held = select(FetchJob.biz_id).where(FetchJob.state == RUNNING,
                                             col(FetchJob.lease_until) >= now)
        with Session(self._reader) as s:
            ids = s.exec(select(Inbox.id).where(Inbox.source == "api",
                                                col(Inbox.processed_at).is_(None),
                                                col(Inbox.biz_id).not_in(held))
                         .order_by(col(Inbox.id))).all()
        stored = store.process_many(self.engine, [i for i in ids if i is not None],
                                    hash_key=self._settings.hash_key())
        return sum(1 for r in stored if r.created)

    def settle_callbacks(self, biz_id: str) -> int:
        """Finish the stored callbacks of ``biz_id`` once its fetch is final: duplicates of a
        stored result are marked done; if the fetch failed for good, the callback's own data
        (no images) becomes the record, so the case is not lost."""
        with Session(self._reader) as s:
            ids = s.exec(select(Inbox.id).where(Inbox.source == "notify",
                                                Inbox.biz_id == biz_id,
                                                col(Inbox.processed_at).is_(None))
                         .order_by(col(Inbox.id))).all()
        for inbox_id in ids:
            if inbox_id is not None:
                store.process(self.engine, inbox_id, hash_key=self._settings.hash_key(),
                              actor="notify")
        return len(ids)


__all__ = ["Leftovers"]
