"""The durable fetch queue: one job per biz_id, leases, and the deployment-wide request slots.

"Fetch once" must hold across every process that can read a result — the notify receiver's
worker, cron's ``fetch`` run, every desk replica's "Fetch" button, ``worker`` processes —
on one machine or several sharing PostgreSQL. A lock in one process proves nothing there, so
the database is the referee:

- **Jobs** (``fetch_jobs``): asking for a result enqueues a job, idempotent per biz_id (the
  unique key). Only the process holding a job's *lease* may call FaceID for that biz_id; a
  claim is one conditional ``UPDATE`` (on PostgreSQL the ``next job`` pick uses
  ``FOR UPDATE SKIP LOCKED``; on SQLite every transaction is ``BEGIN IMMEDIATE``), so two
  claimers can never both win.
- **Leases expire**: a holder renews its leases from a heartbeat thread while it waits on
  FaceID; a holder killed with ``kill -9`` stops renewing, and once ``lease_until`` passes the
  job can be claimed again. Whether that second run may spend a read is the ledger's call
  (``faceid.store.ledger``): a crashed attempt counts as spent.
- **Slots** (``fetch_slots``): a request is sent only while holding one of
  ``FACEID_MAX_CONCURRENCY`` slot rows, so all processes together never have more calls in
  flight than the cap. A slot is held per HTTP attempt, not per job, so parsing and storing
  never keep FaceID's capacity idle.
- **Time** is the database's clock (seconds since the epoch), so machines with skewed clocks
  agree on whose lease has run out.

Why a table of our own rather than a task-queue library: docs/decisions.md 23.

This module holds ``FetchQueue`` (the jobs, and the heartbeat that renews its leases); beside
it: ``fetch_jobs`` (the job states and the values the queue hands out), ``fetch_slots`` (the
request-slot half, mixed into ``FetchQueue``) and ``leases`` (database clock, process identity).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    Boolean,
    Engine,
    Float,
    and_,
    bindparam,
    case,
    false,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.pool import StaticPool

from faceid.store.db import chunks, reader
from faceid.store.fetch_jobs import (
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    STATES,
    Claim,
    Finished,
    JobView,
    Outcome,
    QueueStatus,
)
from faceid.store.fetch_slots import RequestSlots
from faceid.store.leases import db_now, default_owner, holder_is_gone
from faceid.store.tables import FetchJob, FetchSlot, Inbox

log = logging.getLogger(__name__)

#: Long enough to cover a FaceID call (15 s timeout) and a stalled heartbeat or two.
DEFAULT_LEASE_S = 60.0

J = FetchJob.__table__.c
S = FetchSlot.__table__.c
I = Inbox.__table__.c  # noqa: E741 - the inbox's columns, beside J and S


def _view(row: Any) -> JobView:
    return JobView(row.biz_id, row.state, row.tries, row.max_tries, row.requested_by,
                   row.requested_at, row.lease_owner, row.lease_until, row.not_before,
                   row.finished_at, row.last_status, row.last_code, row.last_http_status,
                   row.last_message, row.verification_id)


class FetchQueue(RequestSlots):
    """The fetch jobs and request slots of one database, seen from one process (``owner``).

    Thread-safe: the desk's sessions, a worker's threads and a batch's threads share one.
    """

    def __init__(self, engine: Engine, *, cap: int = 4, lease_s: float = DEFAULT_LEASE_S,
                 owner: str | None = None) -> None:
        if cap < 1:
            raise ValueError("the concurrency cap must be at least 1")
        self.engine = engine
        self._reader = reader(engine)
        self.cap = cap
        self.lease_s = float(lease_s)
        self.owner = (owner or default_owner())[:128]
        self._dialect = engine.dialect.name
        self._lock = threading.Lock()
        self._held_jobs: set[int] = set()
        self._held_slots: set[int] = set()
        self._slot_freed = threading.Condition()
        self._slots_ready = False
        self._heartbeat: threading.Thread | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ helpers

    def _now(self) -> Any:
        return db_now(self._dialect)

    def _insert(self, table: Any) -> Any:
        dialect = postgresql if self._dialect == "postgresql" else sqlite
        return dialect.insert(table)

    def db_time(self) -> float:
        with self._reader.connect() as conn:
            return float(conn.execute(select(self._now())).scalar_one())

    def _claimable(self) -> Any:
        now = self._now()
        return or_(
            and_(J.state == QUEUED, or_(J.not_before.is_(None), J.not_before <= now)),
            and_(J.state == RUNNING, J.lease_until < now),
        )

    # ------------------------------------------------------------------ jobs

    def enqueue(self, biz_ids: Iterable[str], requested_by: str, *, refetch: bool = False,
                max_tries: int = 1) -> dict[str, int]:
        """Ask for ``biz_ids`` (idempotent per biz_id); return for each a mark: once the job is
        not running and its ``tries`` exceed the mark, a run that answers this request has
        finished (its outcome is on the job).

        A finished job asked for again goes back to the queue with ``max_tries`` more tries
        (the fetch itself answers "already stored" without a call if it is); a job waiting
        for a retry time becomes due now; a running job is left to its holder.
        """
        ids = list(dict.fromkeys(b for b in biz_ids if b))
        out: dict[str, int] = {}
        if not ids:
            return out
        with self.engine.begin() as conn:
            now = conn.execute(select(self._now())).scalar_one()
            for chunk in chunks(ids):
                conn.execute(self._insert(FetchJob.__table__).values([
                    {"biz_id": b, "state": QUEUED, "refetch": refetch, "requested_by": requested_by,
                     "requested_at": now, "tries": 0, "max_tries": max_tries} for b in chunk
                ]).on_conflict_do_nothing(index_elements=["biz_id"]))
                again = {"state": QUEUED, "not_before": None, "requested_by": requested_by,
                         "requested_at": now, "max_tries": J.tries + max_tries}
                if refetch:
                    again["refetch"] = True
                conn.execute(update(FetchJob.__table__)
                             .where(J.biz_id.in_(chunk), J.state.in_([DONE, FAILED]))
                             .values(**again))
                queued = {"not_before": None,
                          "max_tries": func.max(J.max_tries, J.tries + max_tries)
                          if self._dialect == "sqlite"
                          else func.greatest(J.max_tries, J.tries + max_tries)}
                if refetch:
                    queued["refetch"] = True
                conn.execute(update(FetchJob.__table__)
                             .where(J.biz_id.in_(chunk), J.state == QUEUED).values(**queued))
                # Unless the job still waits in the queue, its latest run answers us: a run
                # under way finishes after we asked, and a job found finished here was
                # re-queued by us (or running) above, so it finished after we asked too
                # (on PostgreSQL another process can finish it between our statements).
                started = J.tries - case((J.state == QUEUED, 0), else_=1)
                out.update((b, int(t)) for b, t in conn.execute(
                    select(J.biz_id, started).where(J.biz_id.in_(chunk))).all())
        return out

    def claim(self, biz_id: str) -> Claim | None:
        """Take the lease of ``biz_id``'s job if nobody holds a live one; None otherwise."""
        claims = self._claim(J.biz_id == biz_id)
        return claims[0] if claims else None

    def claim_these(self, biz_ids: list[str]) -> list[Claim]:
        """Take the leases of the jobs of ``biz_ids`` nobody holds a live lease on, in one
        transaction (``fetch_many``'s share of a worker; a handful of ids at a time)."""
        return self._claim(J.biz_id.in_(biz_ids)) if biz_ids else []

    def claim_next(self) -> Claim | None:
        """Take the lease of the oldest due job."""
        claims = self.claim_batch(1)
        return claims[0] if claims else None

    def claim_batch(self, n: int) -> list[Claim]:
        """Take the leases of up to ``n`` of the oldest due jobs in one transaction (a
        worker's dispatcher: one poll per process, not one per idle thread)."""
        # A materialised CTE, not ``id IN (subquery)``: PostgreSQL may run an IN subquery
        # again for every row it updates (clock_timestamp() is volatile), and one claim then
        # took every due job. The CTE picks once.
        picked = (select(J.id).where(self._claimable()).order_by(J.id).limit(max(1, n))
                  .with_for_update(skip_locked=True).cte("picked")
                  .prefix_with("MATERIALIZED", dialect="postgresql"))
        return self._claim(J.id == picked.c.id)

    def _claim(self, which: Any) -> list[Claim]:
        now = self._now()
        stmt = (update(FetchJob.__table__).where(which, self._claimable())
                .values(state=RUNNING, lease_owner=self.owner, lease_until=now + self.lease_s,
                        started_at=now, tries=J.tries + 1)
                .returning(J.id, J.biz_id, J.refetch, J.tries, J.max_tries, J.requested_by))
        with self.engine.begin() as conn:
            rows = conn.execute(stmt).all()
        if rows:
            self._hold(jobs=[r.id for r in rows])
        return sorted((Claim(r.id, r.biz_id, bool(r.refetch), r.tries, r.max_tries,
                             r.requested_by) for r in rows), key=lambda c: c.job_id)

    def finish(self, claim: Claim, *, ok: bool, status: str, message: str,
               code: str | None = None, http_status: int | None = None,
               verification_id: int | None = None,
               retry_in_s: float | None = None) -> Finished:
        """Record a run's outcome and give the lease back; return the job's new state, and
        (once final) whether stored callbacks of the biz_id wait to be settled.

        ``retry_in_s`` (a transient failure with tries left) puts the job back in the queue,
        due after that many seconds; otherwise a failure is final until someone asks again.
        """
        return self.finish_many([Outcome(claim, ok, status, message, code, http_status,
                                         verification_id, retry_in_s)])[0]

    def finish_many(self, outcomes: Sequence[Outcome]) -> list[Finished]:
        """``finish`` for several runs in one transaction and one executemany (a worker's
        batch of stored answers); one ``Finished`` per outcome, in order."""
        if not outcomes:
            return []
        now = self._now()
        rows: list[dict[str, Any]] = []
        states: list[str] = []
        for o in outcomes:
            claim = o.claim
            retry = not o.ok and o.retry_in_s is not None and claim.tries < claim.max_tries
            state = DONE if o.ok else (QUEUED if retry else FAILED)
            states.append(state)
            rows.append({"_id": claim.job_id, "_state": state, "_status": o.status,
                         "_code": o.code, "_http": o.http_status,
                         "_message": o.message[:1024], "_vid": o.verification_id,
                         "_retry": float(o.retry_in_s or 0) if retry else None,
                         "_ok": bool(o.ok)})
        stmt = (update(FetchJob.__table__)
                .where(J.id == bindparam("_id"), J.lease_owner == self.owner, J.state == RUNNING)
                .values(state=bindparam("_state"), lease_owner=None, lease_until=None,
                        finished_at=now, last_status=bindparam("_status"),
                        last_code=bindparam("_code"), last_http_status=bindparam("_http"),
                        last_message=bindparam("_message"),
                        verification_id=bindparam("_vid"),
                        # NULL (no retry) + now is NULL: not due again by itself.
                        not_before=now + bindparam("_retry", type_=Float),
                        # A fetched refetch is done; a failed one is still wanted.
                        refetch=case((bindparam("_ok", type_=Boolean), false()),
                                     else_=J.refetch)))
        final = [o.claim.biz_id for o, st in zip(outcomes, states, strict=True)
                 if st != QUEUED]
        with self.engine.begin() as conn:
            done = conn.execute(stmt, rows).rowcount
            waiting: set[str] = set()
            if final:
                # Asked here, in the same transaction, so the common case (no callback) costs
                # no transaction of its own.
                waiting = set(conn.execute(select(I.biz_id).where(
                    I.source == "notify", I.biz_id.in_(final), I.processed_at.is_(None))
                    .distinct()).scalars())
        self._let_go(jobs=[o.claim.job_id for o in outcomes])
        if done is not None and 0 <= done < len(rows):
            # Our lease ran out and another process took the job over: its run stands (the
            # store is idempotent by biz_id, and the ledger counted our read).
            log.warning("%d fetch job(s) were taken over after their lease expired",
                        len(rows) - done)
        return [Finished(st, st != QUEUED and o.claim.biz_id in waiting)
                for o, st in zip(outcomes, states, strict=True)]

    def expire_gone_holders(self, owners: Iterable[str | None]) -> int:
        """End now the leases of holders that are processes of this machine no longer alive
        (``holder_is_gone``), so a rerun after ``kill -9`` does not wait out their lease;
        return how many jobs and slots were freed for claiming."""
        gone = sorted({o for o in owners if o and holder_is_gone(o)})
        if not gone:
            return 0
        with self.engine.begin() as conn:
            freed = conn.execute(update(FetchJob.__table__)
                                 .where(J.lease_owner.in_(gone), J.state == RUNNING)
                                 .values(lease_until=0.0)).rowcount
            freed += conn.execute(update(FetchSlot.__table__)
                                  .where(S.holder.in_(gone)).values(lease_until=0.0)).rowcount
        log.warning("took over the leases of %d process(es) of this machine that are gone",
                    len(gone))
        return freed

    def reap(self) -> int:
        """``expire_gone_holders`` for every holder of a running job or a slot."""
        with self._reader.connect() as conn:
            owners = set(conn.execute(select(J.lease_owner).where(J.state == RUNNING)
                                      .distinct()).scalars())
            owners |= set(conn.execute(select(S.holder).where(S.holder.is_not(None))
                                       .distinct()).scalars())
        return self.expire_gone_holders(owners)

    def forget(self, claim: Claim) -> None:
        """Stop renewing a job's lease without touching its row (the database is away): it
        goes stale and another run takes it over."""
        self._let_go(jobs=[claim.job_id])

    def release(self, claim: Claim) -> None:
        """Give a job back without having run it (the batch was stopped)."""
        with self.engine.begin() as conn:
            conn.execute(update(FetchJob.__table__)
                         .where(J.id == claim.job_id, J.lease_owner == self.owner,
                                J.state == RUNNING)
                         .values(state=QUEUED, lease_owner=None, lease_until=None,
                                 tries=J.tries - 1))
        self._let_go(jobs=[claim.job_id])

    def abandon(self, biz_ids: Iterable[str], message: str) -> None:
        """Fail the never-tried queued jobs of ``biz_ids`` (a batch stopped by a refusal that
        would hit every call): nobody is left waiting on them; asking again re-queues."""
        ids = list(biz_ids)
        with self.engine.begin() as conn:
            for chunk in chunks(ids):
                conn.execute(update(FetchJob.__table__)
                             .where(J.biz_id.in_(chunk), J.state == QUEUED, J.tries == 0)
                             .values(state=FAILED, last_status="failed", last_message=message,
                                     finished_at=self._now()))

    def jobs(self, biz_ids: Iterable[str]) -> dict[str, JobView]:
        ids = list(biz_ids)
        out: dict[str, JobView] = {}
        with self._reader.connect() as conn:
            for chunk in chunks(ids):
                for row in conn.execute(select(FetchJob.__table__)
                                        .where(J.biz_id.in_(chunk))):
                    out[row.biz_id] = _view(row)
        return out

    def job(self, biz_id: str) -> JobView | None:
        return self.jobs([biz_id]).get(biz_id)

    def status(self, *, limit: int = 50) -> QueueStatus:
        with self._reader.connect() as conn:
            now = float(conn.execute(select(self._now())).scalar_one())
            counts = {s: 0 for s in STATES}
            counts.update((st, int(n)) for st, n in conn.execute(
                select(J.state, func.count()).group_by(J.state)).all())
            stale = conn.execute(select(func.count()).where(
                J.state == RUNNING, J.lease_until < now)).scalar_one()
            waiting = conn.execute(select(func.count()).where(
                J.state == QUEUED, J.not_before > now)).scalar_one()
            in_use = conn.execute(select(func.count()).where(
                S.slot < self.cap, S.holder.is_not(None), S.lease_until >= now)).scalar_one()
            rows = conn.execute(select(FetchJob.__table__).where(J.state != DONE)
                                .order_by(J.state == FAILED, J.id.desc()).limit(limit)).all()
        return QueueStatus(now, counts, int(stale), int(waiting), int(in_use), self.cap,
                           [_view(r) for r in rows])

    # ------------------------------------------------------------------ leases

    def _hold(self, *, jobs: Iterable[int] = (), slots: Iterable[int] = ()) -> None:
        with self._lock:
            self._held_jobs.update(jobs)
            self._held_slots.update(slots)
            # An in-memory SQLite (tests) is one connection shared by every thread: a beat
            # would interleave with another thread's transaction on it. Nothing outside this
            # process can see that database, so there is no one to keep a lease from.
            shared_conn = isinstance(self.engine.pool, StaticPool)
            if not shared_conn and (self._heartbeat is None or not self._heartbeat.is_alive()):
                self._stop.clear()
                self._heartbeat = threading.Thread(target=self._beat, daemon=True,
                                                   name="faceid-lease-heartbeat")
                self._heartbeat.start()

    def _let_go(self, *, jobs: Iterable[int] = (), slots: Iterable[int] = ()) -> None:
        with self._lock:
            self._held_jobs.difference_update(jobs)
            self._held_slots.difference_update(slots)

    def held(self) -> tuple[set[int], set[int]]:
        with self._lock:
            return set(self._held_jobs), set(self._held_slots)

    def renew(self) -> int:
        """Extend every lease this process holds; return how many rows were renewed."""
        jobs, slots = self.held()
        if not jobs and not slots:
            return 0
        until = self._now() + self.lease_s
        renewed = 0
        with self.engine.begin() as conn:
            if jobs:
                renewed += conn.execute(update(FetchJob.__table__).where(
                    J.id.in_(jobs), J.lease_owner == self.owner, J.state == RUNNING)
                    .values(lease_until=until)).rowcount
            if slots:
                renewed += conn.execute(update(FetchSlot.__table__).where(
                    S.slot.in_(slots), S.holder == self.owner)
                    .values(lease_until=until)).rowcount
        return renewed

    def _beat(self) -> None:
        interval = max(0.05, self.lease_s / 4)
        while not self._stop.wait(interval):
            try:
                self.renew()
            except Exception as exc:  # a missed beat is survivable; the next one retries
                log.warning("lease renewal failed (%s)", type(exc).__name__)

    def close(self) -> None:
        self._stop.set()


__all__ = ["DEFAULT_LEASE_S", "FetchQueue"]
