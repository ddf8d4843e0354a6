"""Fetch once, keep forever: the only code that spends FaceID's get_result quota.

FaceID keeps a result for 1 day and lets it be read 3 times (an older page said once), so the
desk is the system of record and every read is precious:

- a biz_id already in the store is never read again unless a person asks for a refetch, and a
  refetch is refused (``QuotaExhausted``) when the ledger shows no read left or the window shut;
- every attempt is written to the ``fetch_attempts`` ledger and committed *before* the request
  goes out (``LedgerLog.before``), so a crash mid-request still counts as a spent read;
- the 200 body is committed to the inbox (``store.start_ingest``, with the ledger's outcome)
  before anything parses it, then stored (``finish_ingest``; by a worker in batches); a body
  left in the inbox by a crash in between is stored by the next run for that biz_id (or
  ``finish_received_answers``) instead of reading FaceID again;
- FaceID's refusals come back as a plain ``FetchOutcome`` (never an exception carrying a URL);
- across processes and machines, a biz_id is read only by the holder of its job's lease in
  the durable queue (``faceid.store.fetchqueue``), and every request holds one of the
  deployment-wide slots, so the ``FACEID_MAX_CONCURRENCY`` cap holds for all of them together.
  Every path (``fetch``, ``fetch_many``, the ``Worker``) goes through ``run_claim``.

This module holds ``FetchService``; beside it: ``quota`` (what the ledger leaves to read),
``ledger`` (``LedgerLog``), ``fetch_reads`` (quota, pre-fetch state, look-up: the read-only half
of the service), ``fetch_leftovers`` (what waits in the inbox for a fetch), ``fetch_outcomes``
(``FetchOutcome``, ``FetchSummary`` and the values passed between threads), ``fetch_batch``
(``fetch_many``: a worker over the call's biz_ids), ``slot_gate`` (how a process's threads share
request slots) and ``refetch`` (a second read against the stored copy).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from faceid.api.client import RETURN_IMAGE_ALL, FaceIDClient
from faceid.core.config import Settings
from faceid.core.errors import (
    APIError,
    QuotaExhausted,
    RequestRefused,
    TransportError,
)
from faceid.store import audit, fetch_jobs
from faceid.store import write as store
from faceid.store.db import reader, urgent
from faceid.store.fetch_batch import fetch_many
from faceid.store.fetch_jobs import RUNNING, Claim
from faceid.store.fetch_leftovers import Leftovers
from faceid.store.fetch_outcomes import (
    ALREADY,
    EXPIRED,
    FAILED,
    PENDING,
    STORED,
    Answer,
    AnswerSink,
    FetchOutcome,
    FetchSummary,
    JobState,
    Received,
    _not_attempted,
    _outcome_of_other,
    _status_of,
    actor_name,
)
from faceid.store.fetch_reads import FetchReads
from faceid.store.fetchqueue import FetchQueue
from faceid.store.ledger import LedgerLog
from faceid.store.refetch import record_refetch
from faceid.store.slot_gate import SlotGate, Stopped
from faceid.store.store_process import StoreProcess, child_settings, wanted
from faceid.store.tables import FetchAttempt, Inbox

log = logging.getLogger(__name__)

_FA = FetchAttempt.__table__.c


class FetchService(FetchReads, Leftovers):
    """Reads results from FaceID into the store, spending the quota as little as possible."""

    def __init__(self, engine: Engine, client_factory: Callable[[], FaceIDClient],
                 settings: Settings, *, clock: Callable[[], float] = time.time,
                 fetch_queue: FetchQueue | None = None, wait_s: float | None = None,
                 retry_delay_s: float = 30.0) -> None:
        self.engine = engine
        self._reader = reader(engine)
        self._client_factory = client_factory
        self._settings = settings
        self._clock = clock
        #: The one referee of "who may read this biz_id now" across every process.
        self.queue = fetch_queue or FetchQueue(engine, cap=settings.max_concurrency,
                                               lease_s=settings.fetch_lease_s)
        #: How long ``fetch`` waits on a job another process is running before answering
        #: "still being fetched" (a call times out after timeout_s; retries add backoff).
        self._wait_s = wait_s if wait_s is not None else 4 * settings.timeout_s + 30
        self.retry_delay_s = retry_delay_s

    @property
    def settings(self) -> Settings:
        return self._settings

    def client(self) -> FaceIDClient:
        return self._client_factory()

    # ------------------------------------------------------------------ fetching

    def fetch(self, biz_id: str, actor: str | Any, *, refetch: bool = False) -> FetchOutcome:
        """Fetch one biz_id into the store. Raises ``QuotaExhausted`` only for a refused refetch.

        ``actor`` is a username or an ``Actor``; it goes to the ledger and the audit trail.
        """
        biz_id, actor = biz_id.strip(), actor_name(actor)
        st = self.state(biz_id)
        vid, q = st.verification_id, st.quota
        if vid is not None and not refetch:
            return FetchOutcome(biz_id, ALREADY, "Already stored; FaceID was not called.", vid)
        if vid is not None and not q.can_read:
            raise QuotaExhausted(f"Refetch refused. {q.describe()}")
        seen = self.queue.enqueue([biz_id], actor, refetch=refetch)[biz_id]
        deadline = time.monotonic() + self._wait_s
        pause = 0.02
        while True:
            claim = self.queue.claim(biz_id)
            if claim is not None:
                return self.run_claim(claim, self._client_factory(), actor=actor, reraise=True)
            job = self.queue.job(biz_id)
            if job is not None and job.state != RUNNING and job.tries > seen:
                return _outcome_of_other(job)
            if job is not None and job.state == RUNNING:
                self.queue.expire_gone_holders([job.lease_owner])
            if time.monotonic() > deadline:
                return FetchOutcome(biz_id, PENDING, "Another process is fetching this biz_id "
                                    "right now; it will be in the store when that finishes.")
            time.sleep(pause)
            pause = min(pause * 1.5, 0.25)

    def run_claim(self, claim: Claim, client: FaceIDClient, *, actor: str | None = None,
                  gate: SlotGate | None = None,
                  reraise: bool = False, retry_in_s: float | None = None,
                  storer: AnswerSink | None = None,
                  state: JobState | None = None,
                  ledger: LedgerLog | None = None) -> FetchOutcome | None:
        """Run one claimed job: fetch (or find it stored), record the outcome on the job and
        give the lease back. A transient failure of a job that allows more tries goes back to
        the queue (due after ``retry_delay_s``); a final outcome settles the callbacks that
        waited on it. Never raises, unless ``reraise`` (a person's own click: a refused
        refetch is an error there).

        With ``storer``, a first fetch's answer is committed to the inbox here, then handed to
        ``storer`` to be stored with others in one transaction (``store_answers``), and None
        is returned: the calling thread is free for the next job at once, and the job's
        outcome is recorded when its batch is stored. ``state`` is ``states()``'s answer for
        the biz_id, read after the claim (a worker reads it for its whole batch at once), and
        ``ledger`` the job's first attempt, if the worker committed it already (``announce``):
        struck here if the run ends without sending it."""
        biz_id, who = claim.biz_id, actor or claim.requested_by or "worker"
        error: BaseException | None = None
        try:
            outcome = self._fetch_locked(biz_id, who, claim.refetch, client,
                                         gate or SlotGate(1), defer=storer is not None,
                                         state=state, ledger=ledger)
        except Stopped:
            self.queue.release(claim)
            return _not_attempted(biz_id)
        except QuotaExhausted as exc:
            outcome, error = FetchOutcome(biz_id, EXPIRED, str(exc)), exc
        except Exception as exc:
            # One broken biz_id must not sink a batch or a worker; the type name carries no
            # secret and the redacting log filter scrubs the traceback.
            log.error("fetch biz_id=%s crashed", biz_id, exc_info=True)
            outcome = FetchOutcome(biz_id, FAILED, f"Unexpected error ({type(exc).__name__}).")
            error = exc
        except BaseException:
            # Interrupted (Ctrl-C, SystemExit): hand the job back now rather than leave it to
            # the heartbeat of a process that may live on, or to a 60 s lease after it dies.
            # A request that went out is in the ledger, which counts it as a spent read.
            with contextlib.suppress(Exception):
                self.queue.release(claim)
            raise
        finally:
            if ledger is not None:
                # Announced by the dispatcher but not sent (the job needed no read after
                # all, or stopped): struck. A no-op for a log that ran to its end.
                with contextlib.suppress(Exception):
                    ledger.abort()
        if isinstance(outcome, Answer):
            assert storer is not None
            storer(Received(claim, who, retry_in_s, outcome))
            return None
        try:
            self._record([(claim, outcome, retry_in_s)])
        except Exception:
            if reraise and error is None:
                raise
        if reraise and error is not None:
            raise error
        return outcome

    def _record(self, runs: list[tuple[Claim, FetchOutcome, float | None]]) -> None:
        """Record the outcomes on their jobs (one transaction) and settle the callbacks that
        waited on a final one. Raises if the database is away, after letting the jobs go."""
        try:
            finished = self.queue.finish_many([fetch_jobs.Outcome(
                claim, outcome.ok, outcome.status, outcome.message, outcome.code,
                outcome.http_status, outcome.verification_id,
                (self.retry_delay_s if retry_in_s is None else retry_in_s)
                if outcome.status == FAILED else None)
                for claim, outcome, retry_in_s in runs])
            for (claim, _, _), done in zip(runs, finished, strict=True):
                if done.callbacks_waiting:
                    self.settle_callbacks(claim.biz_id)
        except Exception as exc:
            # The database is away. Stop renewing the leases, so the jobs go stale and are
            # taken over (the store and the ledger already hold what this run did); never
            # leave them held for as long as this process lives.
            for claim, _, _ in runs:
                self.queue.forget(claim)
            log.error("fetch: outcome of %d job(s) not recorded (%s)", len(runs),
                      type(exc).__name__)
            raise

    def store_process(self) -> StoreProcess | None:
        """A child process, started now, to store a worker's answers in (decision 31), if
        the settings and the database want one; else None (the worker stores them itself)."""
        if not wanted(self.engine, self._settings):
            return None
        told = child_settings(self._settings)
        if told is None:
            return None
        try:
            return StoreProcess(self.engine, told, self.queue, retry_delay_s=self.retry_delay_s,
                                fallback=self.store_answers).start()
        except OSError as exc:
            log.warning("no store process (%s); the worker stores its answers itself",
                        type(exc).__name__)
            return None

    def announce(self, claims: list[Claim], states: dict[str, JobState], *,
                 actor: str | None = None) -> dict[str, LedgerLog]:
        """Commit the first attempt of every claimed job that will read FaceID (by its
        pre-fetch state) in one transaction, for a worker's batch: its run threads then send
        with no write of their own before the call (decision 29). Unsent ones are struck
        when their run ends (``run_claim``)."""
        first = []
        for c in claims:
            st = states.get(c.biz_id)
            if (c.refetch or st is None or st.verification_id is not None
                    or st.leftover is not None or not st.quota.first_fetch_allowed):
                continue
            first.append((c.biz_id, actor or c.requested_by or "worker",
                          st.quota.attempts + 1))
        return LedgerLog.announce_batch(self.engine, self._clock, self.queue, first)

    def store_answers(self, received: list[Received]) -> list[FetchOutcome]:
        """Store answers ``run_claim`` handed to a storer, as one batch per actor (one
        transaction: cases, export lines, audit entries), then record the jobs' outcomes in
        one more. One outcome per answer, in order. If the database is away, the jobs are let
        go (their answers wait in the inbox: the next run stores them, never reads again)."""
        outcomes: dict[int, FetchOutcome] = {}
        by_actor: dict[str, list[tuple[int, Received]]] = {}
        for i, r in enumerate(received):
            by_actor.setdefault(r.actor, []).append((i, r))
        try:
            for actor, group in by_actor.items():
                results = store.finish_ingest(self.engine, store.Ingesting.merged(
                    [r.answer.ingesting for _, r in group]), actor=actor)
                for (i, r), result in zip(group, results, strict=True):
                    outcomes[i] = self._stored_outcome(r.claim.biz_id, actor, result,
                                                       r.answer.http_status, r.answer.calls)
            self._record([(r.claim, outcomes[i], r.retry_in_s)
                          for i, r in enumerate(received)])
        except Exception as exc:
            for r in received:
                self.queue.forget(r.claim)
            log.error("fetch: %d answer(s) not stored (%s); they wait in the inbox",
                      len(received), type(exc).__name__)
            return [outcomes.get(i) or FetchOutcome(
                r.claim.biz_id, FAILED, "Received, but the database could not be reached "
                f"({type(exc).__name__}); the answer waits in the inbox, and the next run "
                "stores it without reading FaceID again.", None, "OK", r.answer.http_status,
                r.answer.calls) for i, r in enumerate(received)]
        return [outcomes[i] for i in range(len(received))]

    def _fetch_locked(self, biz_id: str, actor: str, refetch: bool, client: FaceIDClient,
                      gate: SlotGate, *, defer: bool = False,
                      state: JobState | None = None,
                      ledger: LedgerLog | None = None) -> FetchOutcome | Answer:
        """The fetch itself; the caller holds the job's lease (no one else reads biz_id).
        With ``defer``, a first fetch's answer is committed to the inbox and returned as an
        ``Answer`` for ``store_answers``."""
        if state is None:
            state = self.state(biz_id)
        vid, stored_sha, q = state.verification_id, state.stored_sha256, state.quota
        if vid is not None and not refetch:
            return FetchOutcome(biz_id, ALREADY, "Already stored; FaceID was not called.", vid)
        if state.leftover is not None:
            # An answer an interrupted run received but never stored: store it instead of
            # spending another read on the same result.
            kept = store.process(self.engine, state.leftover,
                                 hash_key=self._settings.hash_key(), actor=actor)
            if kept.verification_id is not None:
                return FetchOutcome(biz_id, STORED, "Stored the answer an interrupted run had "
                                    "received; FaceID was not called again.",
                                    kept.verification_id, "OK", 200, 0)
        if vid is not None and not q.can_read:
            raise QuotaExhausted(f"Refetch refused. {q.describe()}")
        if vid is None and not q.first_fetch_allowed:
            # A closed window alone does not stop a first fetch: the deadline is our estimate
            # (clock skew, biz_id time) and a read of an expired result costs nothing.
            return self._failed(biz_id, actor, EXPIRED, f"Not fetched. {q.describe()}",
                                None, None, 0, audit_action="fetch refused")
        if ledger is None:
            ledger = LedgerLog(self.engine, actor, self._clock, self.queue, biz_id=biz_id)
        try:
            try:
                with gate.hold(ledger, before_wait=None if ledger.announced
                               else ledger.announce_early) as held:
                    answer = client.get_result(biz_id, return_image=RETURN_IMAGE_ALL,
                                               return_verify_time=True, attempts=ledger)
                    # The slot goes straight to a request of ours waiting for one (its
                    # attempt is already in the ledger). Then the answer is committed to the
                    # inbox, with the ledger's OK (and the slot given back if no one took
                    # it), before anything parses it; it is stored from the bytes in hand.
                    held.pass_on(ledger.pass_slot)
                    with urgent():
                        ingesting = store.start_ingest(
                            self.engine, [store.Body(answer.body, "api", "get_result", biz_id)],
                            hash_key=self._settings.hash_key(), also=ledger.keep)
                    ledger.kept()
            finally:
                ledger.abort()  # writes the outcome and frees the slot if that never ran
        except QuotaExhausted:
            # Raised by the ledger guard before a retry would have become one read too many.
            if vid is not None:
                raise
            return self._failed(biz_id, actor, EXPIRED,
                                f"Stopped: {self.quota(biz_id).describe()}",
                                ledger.last_outcome, ledger.last_status, ledger.calls)
        except (APIError, TransportError, RequestRefused) as exc:
            return self._failed(biz_id, actor, _status_of(exc), str(exc), ledger.last_outcome,
                                ledger.last_status, ledger.calls)
        if defer and vid is None:
            return Answer(ingesting, answer.http_status, ledger.calls)
        (result,) = store.finish_ingest(self.engine, ingesting, actor=actor)
        if vid is not None and result.error is None:
            return record_refetch(self.engine, biz_id, actor, vid, stored_sha, answer.body,
                                  ledger.calls)
        return self._stored_outcome(biz_id, actor, result, answer.http_status, ledger.calls)

    def _stored_outcome(self, biz_id: str, actor: str, result: store.Stored,
                        http_status: int | None, calls: int) -> FetchOutcome:
        if result.error is not None:
            # FaceID answered 200 with something that is not a result; the body stays in the
            # inbox (with the reason) for a person to look at.
            return self._failed(biz_id, actor, FAILED,
                                f"FaceID's answer could not be stored: {result.error}",
                                "OK", http_status, calls)
        note = ""
        if result.biz_id != biz_id:
            note = f" (FaceID's answer names biz_id {result.biz_id!r})"
        message = "Fetched and stored." if result.created else "Already stored."
        return FetchOutcome(biz_id, STORED if result.created else ALREADY, message + note,
                            result.verification_id, "OK", http_status, calls)

    def _failed(self, biz_id: str, actor: str, status: str, message: str, code: str | None,
                http_status: int | None, calls: int, *,
                audit_action: str = "fetch failed") -> FetchOutcome:
        with Session(self.engine) as s:
            audit.record(s, actor, audit_action, biz_id, {
                "status": status, "outcome": code, "http_status": http_status,
                "api_calls": calls, "message": message,
            })
            s.commit()
        log.info("fetch biz_id=%s status=%s outcome=%s", biz_id, status, code)
        return FetchOutcome(biz_id, status, message, None, code, http_status, calls)

    # ------------------------------------------------------------------ batches

    def fetch_many(self, biz_ids: Iterable[str], actor: str | Any, *, concurrency: int = 4,
                   progress: Callable[[FetchOutcome], None] | None = None,
                   refetch: bool = False, resume: bool = True) -> FetchSummary:
        """Fetch many biz_ids through the queue; each one is committed on its own.

        Every biz_id not stored is enqueued and worked by a ``Worker`` of this call: its
        dispatcher claims a few of these biz_ids at a time, ``2 × concurrency`` threads run
        them (the request slots cap what is in flight), and its batcher stores what comes
        back (decisions 27 and 29). A job another process holds is waited for, and its
        outcome reported as that process's ("stored by another process"), never read again.
        ``resume`` first finishes bodies an interrupted run received but never processed, so
        they count as stored and are not read again. ``progress`` is called once per biz_id.
        """
        return fetch_many(self, biz_ids, actor_name(actor), concurrency=concurrency,
                          progress=progress, refetch=refetch, resume=resume)


def pending_count(engine: Engine) -> int:
    """Bodies received but not yet processed (what a resume would finish)."""
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(Inbox)
                          .where(col(Inbox.processed_at).is_(None))).one())


__all__ = ["FetchService", "pending_count"]
