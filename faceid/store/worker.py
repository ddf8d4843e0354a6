"""The long-running fetch worker: claims due jobs from the durable queue and runs them.

Any number of workers may run, in any processes on any machines sharing the database: each
job is run by the one holder of its lease, and each request holds a deployment-wide slot
(``faceid.store.fetchqueue``). ``python -m faceid worker`` runs one in the foreground; the notify
receiver hosts one (so callbacks are completed without a second process) and the desk hosts
one in demo mode (so ``make run`` needs no extra terminal).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Protocol

from faceid.api.client import FaceIDClient
from faceid.store.answer_batches import AnswerBatcher
from faceid.store.fetch_jobs import Claim
from faceid.store.fetch_outcomes import (
    AnswerSink,
    FetchOutcome,
    JobState,
    Received,
    _db_unreachable,
)
from faceid.store.fetchqueue import FetchQueue
from faceid.store.ledger import LedgerLog
from faceid.store.slot_gate import SlotGate
from faceid.store.store_process import StoreProcess

log = logging.getLogger(__name__)

#: How long an idle thread sleeps before asking the queue again.
DEFAULT_IDLE_S = 0.5
#: How long the dispatcher waits for a few run threads to be free before claiming.
CLAIM_GATHER_S = 0.02
#: How often an idle worker looks for leases of dead processes of its machine.
REAP_EVERY_S = 5.0


class Fetcher(Protocol):
    """What a worker uses of ``faceid.store.fetching.FetchService`` (typed, not imported: the
    service's ``fetch_many`` runs a worker)."""

    queue: FetchQueue

    def client(self) -> FaceIDClient: ...

    def finish_received_answers(self) -> int: ...

    def states(self, biz_ids: list[str]) -> dict[str, JobState]: ...

    def announce(self, claims: list[Claim], states: dict[str, JobState], *,
                 actor: str | None = None) -> dict[str, LedgerLog]: ...

    def run_claim(self, claim: Claim, client: FaceIDClient, *, actor: str | None = None,
                  gate: SlotGate | None = None, reraise: bool = False,
                  retry_in_s: float | None = None, storer: AnswerSink | None = None,
                  state: JobState | None = None,
                  ledger: LedgerLog | None = None) -> FetchOutcome | None: ...

    def store_answers(self, received: list[Received]) -> list[FetchOutcome]: ...

    def store_process(self) -> StoreProcess | None: ...


class Worker:
    """A dispatcher thread claims due jobs — as many as there are idle run threads, plus a
    batch ahead, in one transaction — reads their pre-fetch states and commits their first
    attempts (decision 29); ``threads`` run threads run them. One poll per process, not one
    per idle thread: many idle workers would otherwise keep the database (SQLite's single
    writer above all) busy answering "nothing to do". The run threads wait on FaceID, hand
    their slot to the next request and commit each answer to the inbox; one
    ``AnswerBatcher`` thread stores them in batches (decision 27)."""

    def __init__(self, fetcher: Fetcher, *, threads: int | None = None,
                 idle_s: float = DEFAULT_IDLE_S, name: str = "worker",
                 retry_delay_s: float | None = None,
                 claim: Callable[[int], list[Claim]] | None = None,
                 gate: SlotGate | None = None, ahead: int | None = None,
                 on_outcome: Callable[[FetchOutcome], None] | None = None,
                 resume: bool = True, actor: str | None = None,
                 store_process: bool = True) -> None:
        """``claim``, ``gate`` and ``on_outcome`` let ``fetch_many`` run its own biz_ids
        through a worker: up to n of them claimed per call (default: any due jobs), its gate
        (stopped by a refusal that would fail every call), and each job's outcome reported.
        ``resume``: first store answers an interrupted run left in the inbox. ``actor``: who
        the ledger and the audit trail name (default: whoever asked for each job).
        ``store_process``: False keeps the store in this process even where the settings
        want a child for it (a short batch would wait for the child to start)."""
        self.actor = actor
        self.fetcher = fetcher
        self._claim_jobs = claim or fetcher.queue.claim_batch
        self._on_outcome = on_outcome
        self._resume = resume
        self._store_apart = store_process
        #: When a transient failure of a job with tries left is run again.
        self.retry_delay_s = retry_delay_s
        # Twice the cap by default: while some threads wait on FaceID, others commit what
        # came back to the inbox and have the next claimed job ready for a freed slot (the
        # store itself is the batcher's).
        self.threads = max(1, threads if threads is not None else 2 * fetcher.queue.cap)
        self.idle_s = idle_s
        #: Jobs claimed beyond the idle threads, waiting in this process: a thread that hands
        #: its slot on finds its next job ready. Without them, on PostgreSQL run threads
        #: waited ~49 ms per job for the dispatcher's claim/state/announce round trips and a
        #: third of the answers found no request to hand their slot to (bench/README.md).
        self.ahead = fetcher.queue.cap if ahead is None else ahead
        self._claim_min = max(1, self.threads // 4)
        self.name = name
        self.runs = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._idle = threading.Condition()
        #: How many more jobs the dispatcher may claim: idle threads plus ``ahead``.
        self._room = 0
        self._jobs: queue.SimpleQueue[tuple[Claim, JobState | None, LedgerLog | None] | None] = (
            queue.SimpleQueue())
        self._threads: list[threading.Thread] = []
        self._answers: AnswerBatcher | None = None
        self._store: StoreProcess | None = None
        # No more threads of this process ask the database for a request slot than there
        # are slots: the others would only spin on write transactions that cannot succeed.
        # They wait here instead, and a request with its answer hands its slot to the
        # first of them in memory, before its own commit (decision 29).
        self._gate = gate or SlotGate(fetcher.queue.cap)

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def start(self) -> None:
        """Finish bodies an interrupted run received but never stored, then start the
        threads (returns at once)."""
        if self.running:
            return
        self._stop.clear()
        if self._resume:
            try:
                self.fetcher.finish_received_answers()
            except Exception as exc:  # the queue work does not depend on it
                log.warning("worker: pending bodies not processed (%s)", type(exc).__name__)
        self._room = self.threads + self.ahead
        client = self.fetcher.client()
        # The run threads only wait on FaceID; what comes back is stored in batches here, by a
        # child process where one pays (decision 31).
        self._store = self.fetcher.store_process() if self._store_apart else None
        store = self._store.store_answers if self._store else self.fetcher.store_answers
        self._answers = AnswerBatcher(store, self._stored,
                                      name=f"faceid-{self.name}-store").start()
        self._threads = [threading.Thread(target=self._run, args=(client,), daemon=True,
                                          name=f"faceid-{self.name}-{i}")
                         for i in range(self.threads)]
        self._threads.append(threading.Thread(target=self._dispatch, daemon=True,
                                              name=f"faceid-{self.name}-dispatch"))
        for t in self._threads:
            t.start()

    def wake(self) -> None:
        """A job was just enqueued: stop idling (only this process's threads hear it)."""
        self._wake.set()

    def stop_soon(self) -> None:
        """Ask the threads to stop after their current job (safe from a signal handler)."""
        self._stop.set()
        self._wake.set()
        with self._idle:
            self._idle.notify_all()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming; jobs under way finish (their leases are given back)."""
        self.stop_soon()
        for t in self._threads:
            t.join(timeout)
        self._threads = []
        if self._answers is not None:  # store what the run threads handed over, then stop
            self._answers.close(timeout)
            self._answers = None
        if self._store is not None:
            self._store.close(timeout)
            self._store = None

    def run_forever(self) -> None:
        """The CLI verb: run until ``stop_soon`` (a signal handler) is called."""
        self.start()
        while not self._stop.wait(1.0):
            pass
        self.stop()

    def _dispatch(self) -> None:
        next_reap = time.monotonic() + REAP_EVERY_S
        try:
            while not self._stop.is_set():
                with self._idle:
                    while self._room == 0 and not self._stop.is_set():
                        self._idle.wait(1.0)
                    # A claim costs about as much for four jobs as for one: wait a moment for
                    # a few threads to be free. Twice as many threads as request slots means
                    # the slots are still busy meanwhile.
                    until = time.monotonic() + CLAIM_GATHER_S
                    while (self._room < self._claim_min and not self._stop.is_set()
                           and (left := until - time.monotonic()) > 0):
                        self._idle.wait(left)
                    want = self._room
                if self._stop.is_set():
                    break
                try:
                    claims = self._claim_jobs(want)
                except Exception as exc:  # the database is away: try again later
                    log.warning("worker: claim failed (%s)", type(exc).__name__)
                    claims = []
                if not claims:
                    if time.monotonic() > next_reap:
                        # Jobs of a process of this machine that died: no need to wait out
                        # their leases.
                        next_reap = time.monotonic() + REAP_EVERY_S
                        with contextlib.suppress(Exception):
                            self.fetcher.queue.reap()
                    # Jitter: the dispatchers of many processes should not poll in lockstep.
                    self._wake.wait(self.idle_s * random.uniform(0.5, 1.5))
                    self._wake.clear()
                    continue
                with self._idle:
                    self._room -= len(claims)
                try:  # one read for the batch instead of one per job (else each run reads)
                    states = self.fetcher.states([c.biz_id for c in claims])
                except Exception as exc:
                    log.warning("worker: state read failed (%s)", type(exc).__name__)
                    states = {}
                try:  # their first attempts, in one transaction (else each thread's own)
                    ledgers = self.fetcher.announce(claims, states, actor=self.actor)
                except Exception as exc:
                    log.warning("worker: announce failed (%s)", type(exc).__name__)
                    ledgers = {}
                for claim in claims:
                    self._jobs.put((claim, states.get(claim.biz_id), ledgers.get(claim.biz_id)))
        finally:
            # Hand back anything claimed but not started, so no job waits for a lease to run
            # out; then tell each run thread to stop.
            while True:
                try:
                    left = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if left is not None:
                    if left[2] is not None:  # announced, never sent: struck
                        with contextlib.suppress(Exception):
                            left[2].abort()
                    self.fetcher.queue.release(left[0])
            for _ in range(self.threads):
                self._jobs.put(None)

    def _stored(self, received: Received, outcome: FetchOutcome) -> None:
        self._report(outcome)

    def _report(self, outcome: FetchOutcome) -> None:
        log.info("worker: biz_id=%s %s", outcome.biz_id, outcome.status)
        if self._on_outcome is not None:
            self._on_outcome(outcome)

    def _run(self, client: FaceIDClient) -> None:
        answers = self._answers
        assert answers is not None
        while (job := self._jobs.get()) is not None:
            claim, state, ledger = job
            try:
                outcome = self.fetcher.run_claim(claim, client, actor=self.actor,
                                                 retry_in_s=self.retry_delay_s,
                                                 gate=self._gate, storer=answers.put,
                                                 state=state, ledger=ledger)
                if outcome is not None:  # None: handed to the batcher, reported once stored
                    self._report(outcome)
            except Exception as exc:  # a thread must outlive one bad job or a database hiccup
                log.error("worker: biz_id=%s failed (%s)", claim.biz_id, type(exc).__name__)
                if self._on_outcome is not None:
                    self._on_outcome(_db_unreachable(claim.biz_id, exc))
            finally:
                with self._idle:
                    self.runs += 1
                    self._room += 1
                    # Nothing running and nothing claimed: no answer is on its way, so the
                    # batcher need not wait for one before storing what it has.
                    idle = self._room == self.threads + self.ahead
                    self._idle.notify_all()
                if idle:
                    answers.flush()


__all__ = ["DEFAULT_IDLE_S", "Fetcher", "Worker"]
