"""``FetchService.fetch_many`` (``fetch_many``) and its batch: worker threads that claim its
jobs and run them (``_Batch``) through the batch's own gate of in-flight slots, which a
refusal hitting every call (bad credentials) stops.

Apart from ``faceid.store.fetching`` because the service imports this module: the service is
typed here by what a batch needs of it (``BatchService``), never imported.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from sqlalchemy import Engine

from faceid.api.client import FaceIDClient
from faceid.core.errors import AuthenticationError, AuthorizationError
from faceid.store import write as store
from faceid.store.answer_batches import AnswerBatcher
from faceid.store.fetch_jobs import RUNNING, Claim
from faceid.store.fetch_outcomes import (
    ALREADY,
    FAILED,
    AnswerSink,
    FetchOutcome,
    FetchSummary,
    Received,
    _not_attempted,
    _outcome_of_other,
)
from faceid.store.fetchqueue import FetchQueue
from faceid.store.slot_gate import SlotGate

log = logging.getLogger(__name__)

#: Errors that will fail every other biz_id of a batch the same way: stop calling.
_FATAL = (AuthenticationError, AuthorizationError)


class BatchService(Protocol):
    """What a batch uses of ``faceid.store.fetching.FetchService``."""

    engine: Engine
    queue: FetchQueue

    def finish_received_answers(self) -> int: ...

    def client(self) -> FaceIDClient: ...

    def run_claim(self, claim: Claim, client: FaceIDClient, *, actor: str | None = None,
                  gate: SlotGate | None = None,
                  storer: AnswerSink | None = None) -> FetchOutcome | None: ...

    def store_answers(self, received: list[Received]) -> list[FetchOutcome]: ...


class _Batch:
    """One ``fetch_many`` run: worker threads claim its jobs; the calling thread watches the
    jobs other processes hold and hands back any whose lease lapses."""

    def __init__(self, service: BatchService, todo: list[str], seen: dict[str, int],
                 actor: str, concurrency: int, report: Callable[[FetchOutcome], None]) -> None:
        self.service, self.todo, self.seen, self.actor = service, todo, seen, actor
        self.threads = 2 * max(1, concurrency)
        self.report = report
        self.stop = threading.Event()
        # A refusal that will hit every call (bad credentials) stops the batch before the
        # slot moves on, and a stopped gate lets no more calls out.
        self.slots = SlotGate(concurrency, stop=self.stop, fatal=_FATAL)
        self.work: queue.Queue[str | None] = queue.Queue()
        self.lock = threading.Lock()
        self.waiting: set[str] = set()
        self.finished: set[str] = set()
        self.skipped: list[str] = []

    def _done(self, outcome: FetchOutcome) -> None:
        with self.lock:
            self.finished.add(outcome.biz_id)
        self.report(outcome)

    def _stored(self, received: Received, outcome: FetchOutcome) -> None:
        self._done(outcome)

    def _worker(self, client: FaceIDClient, answers: AnswerBatcher) -> None:
        while (biz_id := self.work.get()) is not None:
            if self.stop.is_set():
                with self.lock:
                    self.skipped.append(biz_id)
                self._done(_not_attempted(biz_id))
                continue
            try:
                claim = self.service.queue.claim(biz_id)
                if claim is None:
                    with self.lock:
                        self.waiting.add(biz_id)
                    continue
                handed = self.service.run_claim(claim, client, actor=self.actor,
                                                gate=self.slots, storer=answers.put)
                if handed is None:
                    continue  # the batcher reports it once stored
                outcome = handed
            except Exception as exc:  # the database is away: this biz_id fails, not the run
                log.error("fetch biz_id=%s failed (%s)", biz_id, type(exc).__name__)
                outcome = FetchOutcome(biz_id, FAILED, "The database could not be reached "
                                       f"({type(exc).__name__}); rerun to resume.")
            self._done(outcome)

    def run(self) -> None:
        for biz_id in self.todo:
            self.work.put(biz_id)
        client = self.service.client()
        answers = AnswerBatcher(self.service.store_answers, self._stored).start()
        try:
            with ThreadPoolExecutor(max_workers=self.threads,
                                    thread_name_prefix="faceid-fetch") as pool:
                for _ in range(self.threads):
                    pool.submit(self._worker, client, answers)
                try:
                    self._watch()
                finally:
                    for _ in range(self.threads):
                        self.work.put(None)
        finally:
            answers.close()
        if self.skipped:
            self.service.queue.abandon(self.skipped, "Not attempted: an earlier answer showed "
                                       "every call would be refused.")

    def _watch(self) -> None:
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
