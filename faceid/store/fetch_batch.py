"""``FetchService.fetch_many`` (``fetch_many``) and its batch (``_Batch``): a ``Worker`` whose
dispatcher claims the batch's own biz_ids and whose gate a refusal hitting every call (bad
credentials) stops, so a bulk fetch gets the worker's batched claims, announced attempts and
slot hand-over (decision 29).

Apart from ``faceid.store.fetching`` because the service imports this module: the service is
typed here by what a batch needs of it (``BatchService``), never imported.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from sqlalchemy import Engine

from faceid.core.errors import AuthenticationError, AuthorizationError
from faceid.store import write as store
from faceid.store.fetch_jobs import RUNNING, Claim
from faceid.store.fetch_outcomes import (
    ALREADY,
    NOT_ATTEMPTED,
    FetchOutcome,
    FetchSummary,
    _db_unreachable,
    _not_attempted,
    _outcome_of_other,
)
from faceid.store.slot_gate import SlotGate
from faceid.store.worker import Fetcher, Worker

log = logging.getLogger(__name__)

#: Errors that will fail every other biz_id of a batch the same way: stop calling.
_FATAL = (AuthenticationError, AuthorizationError)


#: Fewest biz_ids for which a batch stores in a child process (decision 31). The child takes
#: ~0.6 s of CPU to start, which a short batch's answers wait for: measured at 50 ms, C = 8 on
#: PostgreSQL, it gained 0.02 of C/L at 240 biz_ids, nothing at 480, 0.04 at 960; a fetch of a
#: few biz_ids would only finish later.
STORE_PROCESS_MIN = 200


class BatchService(Fetcher, Protocol):
    """What a batch uses of ``faceid.store.fetching.FetchService``."""

    engine: Engine


class _Batch:
    """One ``fetch_many`` run: a ``Worker`` whose dispatcher claims this batch's biz_ids (a
    few at a time, in one transaction) and whose gate the batch can stop; the calling thread
    watches the jobs other processes hold and hands back any whose lease lapses."""

    def __init__(self, service: BatchService, todo: list[str], seen: dict[str, int],
                 actor: str, concurrency: int, report: Callable[[FetchOutcome], None]) -> None:
        self.service, self.todo, self.seen, self.actor = service, todo, seen, actor
        self.concurrency = max(1, concurrency)
        self.report = report
        self.stop = threading.Event()
        # A refusal that will hit every call (bad credentials) stops the batch before the
        # slot moves on, and a stopped gate lets no more calls out.
        self.slots = SlotGate(self.concurrency, stop=self.stop, fatal=_FATAL)
        self.work: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.waiting: set[str] = set()
        self.finished: set[str] = set()
        self.skipped: list[str] = []

    def _done(self, outcome: FetchOutcome) -> None:
        with self.lock:
            self.finished.add(outcome.biz_id)
            if outcome.message == NOT_ATTEMPTED:
                # Claimed or not, never sent: failed for good below (``abandon``), so that no
                # other process sends it with the same refused credentials.
                self.skipped.append(outcome.biz_id)
        self.report(outcome)

    def _claim(self, n: int) -> list[Claim]:
        """The worker's claim: up to ``n`` of this batch's biz_ids. One held by another
        process is watched instead (``_watch``); none is claimed once the batch stopped."""
        ids: list[str] = []
        while len(ids) < n:
            try:
                ids.append(self.work.get_nowait())
            except queue.Empty:
                break
        if not ids:
            return []
        if self.stop.is_set():
            for biz_id in ids:
                self._done(_not_attempted(biz_id))
            return []
        try:
            claims = self.service.queue.claim_these(ids)
        except Exception as exc:  # the database is away: these biz_ids fail, not the run
            log.error("fetch: %d biz_id(s) not claimed (%s)", len(ids), type(exc).__name__)
            for biz_id in ids:
                self._done(_db_unreachable(biz_id, exc))
            return []
        got = {c.biz_id for c in claims}
        with self.lock:
            self.waiting.update(b for b in ids if b not in got)
        return claims

    def run(self) -> None:
        for biz_id in self.todo:
            self.work.put(biz_id)
        worker = Worker(self.service, threads=2 * self.concurrency, idle_s=0.05, name="fetch",
                        claim=self._claim, gate=self.slots, ahead=self.concurrency,
                        on_outcome=self._done, resume=False, actor=self.actor,
                        store_process=len(self.todo) >= STORE_PROCESS_MIN)
        worker.start()
        try:
            self._watch(worker)
        finally:
            worker.stop()
        if self.skipped:
            self.service.queue.abandon(self.skipped, NOT_ATTEMPTED)

    def _watch(self, worker: Worker) -> None:
        """Until every biz_id has an outcome: poll the jobs held elsewhere."""
        pause = 0.05
        while True:
            with self.lock:
                if len(self.finished) >= len(self.todo):
                    return
                waiting = set(self.waiting)
            if not waiting:
                time.sleep(0.02)
                continue
            time.sleep(pause)
            pause = min(pause * 1.5, 0.5)
            views = self.service.queue.jobs(waiting)
            self.service.queue.expire_gone_holders(
                {j.lease_owner for j in views.values() if j.state == RUNNING})
            now = self.service.queue.db_time()
            for biz_id, job in views.items():
                if job.state != RUNNING and job.tries > self.seen.get(biz_id, 0):
                    with self.lock:
                        self.waiting.discard(biz_id)
                    self._done(_outcome_of_other(job))
                elif job.state != RUNNING or job.stale(now):
                    # Free again (given back, or its holder died): try to claim it.
                    with self.lock:
                        self.waiting.discard(biz_id)
                    self.work.put(biz_id)
                    worker.wake()
                    pause = 0.05


def fetch_many(service: BatchService, biz_ids: Iterable[str], actor: str, *, concurrency: int,
               progress: Callable[[FetchOutcome], None] | None, refetch: bool,
               resume: bool) -> FetchSummary:
    """``FetchService.fetch_many`` (which documents it)."""
    started = time.monotonic()
    summary = FetchSummary()
    if resume:
        summary.resumed = service.finish_received_answers()
    wanted = list(dict.fromkeys(b.strip() for b in biz_ids if b and b.strip()))
    done_lock = threading.Lock()
    reported: set[str] = set()

    def report(outcome: FetchOutcome) -> None:
        with done_lock:
            if outcome.biz_id in reported:
                return
            reported.add(outcome.biz_id)
            summary.outcomes.append(outcome)
            if progress is not None:
                progress(outcome)

    have = set() if refetch else store.stored_biz_ids(service.engine, wanted)
    for biz_id in wanted:
        if biz_id in have:
            report(FetchOutcome(biz_id, ALREADY, "Already stored; FaceID was not called."))
    todo = [b for b in wanted if b not in have]
    if todo:
        seen = service.queue.enqueue(todo, actor, refetch=refetch)
        _Batch(service, todo, seen, actor, concurrency, report).run()
    summary.elapsed_s = time.monotonic() - started
    return summary
