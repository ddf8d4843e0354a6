"""What ``FetchService`` answers without calling FaceID: the quota a biz_id has left, what a
run needs to know before it calls (stored? quota? an answer received but never stored?), and
the desk's look-up. A mixin, so ``FetchService`` keeps one public surface."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from faceid.core.timeutil import from_unix
from faceid.store.db import chunks
from faceid.store.fetch_jobs import RUNNING
from faceid.store.fetch_outcomes import JobState, LookupResult, actor_name
from faceid.store.fetchqueue import FetchQueue
from faceid.store.quota import QuotaInfo, quota_of
from faceid.store.tables import FetchAttempt, Inbox, RawResponse, Verification

log = logging.getLogger(__name__)

_FA = FetchAttempt.__table__.c


class FetchReads:
    """The read-only half of ``FetchService`` (it sets these attributes)."""

    _reader: Engine
    _clock: Callable[[], float]
    queue: FetchQueue

    def now(self) -> datetime:
        dt = from_unix(self._clock())
        assert dt is not None
        return dt

    def quota(self, biz_id: str) -> QuotaInfo:
        with self._reader.connect() as conn:
            return self._quota(conn, biz_id)

    def _quota(self, conn: Connection, biz_id: str) -> QuotaInfo:
        rows = conn.execute(select(_FA.outcome, _FA.http_status, _FA.started_at)
                            .where(_FA.biz_id == biz_id).order_by(_FA.id)).all()
        return self._quota_of(biz_id, rows)

    def _quota_of(self, biz_id: str, rows: Sequence[Any]) -> QuotaInfo:
        """The quota from a biz_id's ledger rows (outcome, http_status, started_at), in order."""
        return quota_of(biz_id, rows, self.now())

    def states(self, biz_ids: Sequence[str]) -> dict[str, JobState]:
        """What a run needs to know before calling FaceID for each biz_id, in one read
        transaction of three queries whatever their number (a worker asks for each batch it
        claims): whether it is stored, its quota, and any answer received but never stored."""
        wanted = list(dict.fromkeys(biz_ids))
        stored: dict[str, tuple[int, str | None]] = {}
        ledger: dict[str, list[Any]] = {b: [] for b in wanted}
        leftover: dict[str, int] = {}
        v, raw, inbox = Verification.__table__, RawResponse.__table__, Inbox.__table__
        with self._reader.connect() as conn:
            for part in chunks(wanted):
                stored.update((r[0], (r[1], r[2])) for r in conn.execute(
                    select(v.c.biz_id, v.c.id, raw.c.original_sha256)
                    .select_from(v.outerjoin(raw, raw.c.verification_id == v.c.id))
                    .where(v.c.biz_id.in_(part))))
                for r in conn.execute(select(_FA.biz_id, _FA.outcome, _FA.http_status,
                                             _FA.started_at)
                                      .where(_FA.biz_id.in_(part)).order_by(_FA.id)):
                    ledger[r[0]].append(r[1:])
                for biz_id, inbox_id in conn.execute(
                        select(inbox.c.biz_id, func.min(inbox.c.id))
                        .where(inbox.c.biz_id.in_(part), inbox.c.source == "api",
                               inbox.c.processed_at.is_(None))
                        .group_by(inbox.c.biz_id)):
                    leftover[biz_id] = inbox_id
        out: dict[str, JobState] = {}
        for b in wanted:
            vid, sha = stored.get(b, (None, None))
            out[b] = JobState(vid, sha, self._quota_of(b, ledger[b]),
                              None if vid is not None else leftover.get(b))
        return out

    def state(self, biz_id: str) -> JobState:
        """``states`` for one biz_id."""
        return self.states([biz_id])[biz_id]

    def lookup(self, biz_id: str, actor: str | Any) -> LookupResult:
        """Store first; if the biz_id is not stored, say what a fetch would cost. No API call."""
        biz_id = biz_id.strip()
        st = self.state(biz_id)
        vid, q = st.verification_id, st.quota
        log.debug("lookup biz_id=%s by %s stored=%s", biz_id, actor_name(actor),
                  vid is not None)
        if vid is not None:
            return LookupResult(biz_id, True, vid, q, "Already in the desk's store.")
        msg = f"Not in the store yet. FaceID: {q.describe()}"
        job = self.queue.job(biz_id)
        busy = (job is not None and job.state == RUNNING
                and not job.stale(self.queue.db_time()))
        if busy:
            assert job is not None
            msg += (f" Being fetched right now by {job.lease_owner}: a fetch from here waits "
                    "for it and spends no read of its own.")
        elif q.can_read:
            msg += " Fetching spends one read."
        return LookupResult(biz_id, False, None, q, msg, fetching_elsewhere=busy)
