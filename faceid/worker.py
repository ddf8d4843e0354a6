"""The long-running fetch worker: claims due jobs from the durable queue and runs them.

Any number of workers may run, in any processes on any machines sharing the database: each
job is run by the one holder of its lease, and each request holds a deployment-wide slot
(``faceid.fetchqueue``). ``python -m faceid worker`` runs one in the foreground; the notify
receiver hosts one (so callbacks are completed without a second process) and the desk hosts
one in demo mode (so ``make run`` needs no extra terminal).
"""

from __future__ import annotations

import logging
import random
import threading

from faceid.fetching import FetchService

log = logging.getLogger(__name__)

#: How long an idle thread sleeps before asking the queue again.
DEFAULT_IDLE_S = 0.5


class Worker:
    """``threads`` threads that each claim the oldest due job, run it, and ask again."""

    def __init__(self, fetcher: FetchService, *, threads: int | None = None,
                 idle_s: float = DEFAULT_IDLE_S, name: str = "worker",
                 retry_delay_s: float | None = None) -> None:
        self.fetcher = fetcher
        #: When a transient failure of a job with tries left is run again.
        self.retry_delay_s = retry_delay_s
        self.threads = max(1, threads if threads is not None else fetcher.queue.cap)
        self.idle_s = idle_s
        self.name = name
        self.runs = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def start(self) -> None:
        """Finish bodies an interrupted run received but never stored, then start the
        threads (returns at once)."""
        if self.running:
            return
        self._stop.clear()
        try:
            self.fetcher.finish_received_answers()
        except Exception as exc:  # the queue work does not depend on it
            log.warning("worker: pending bodies not processed (%s)", type(exc).__name__)
        self._threads = [threading.Thread(target=self._loop, name=f"faceid-{self.name}-{i}",
                                          daemon=True) for i in range(self.threads)]
        for t in self._threads:
            t.start()

    def wake(self) -> None:
        """A job was just enqueued: stop idling (only this process's threads hear it)."""
        self._wake.set()

    def stop_soon(self) -> None:
        """Ask the threads to stop after their current job (safe from a signal handler)."""
        self._stop.set()
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming; jobs under way finish (their leases are given back)."""
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout)
        self._threads = []

    def run_forever(self) -> None:
        """The CLI verb: run until ``stop`` (a signal handler) is called."""
        self.start()
        while not self._stop.wait(1.0):
            pass
        self.stop()

    def _loop(self) -> None:
        client = self.fetcher.client()
        while not self._stop.is_set():
            try:
                claim = self.fetcher.queue.claim_next()
            except Exception as exc:  # the database is away: try again later
                log.warning("worker: claim failed (%s)", type(exc).__name__)
                claim = None
            if claim is None:
                # Jitter: idle workers of many processes should not poll in lockstep.
                self._wake.wait(self.idle_s * random.uniform(0.5, 1.5))
                self._wake.clear()
                continue
            outcome = self.fetcher.run_claim(claim, client, retry_in_s=self.retry_delay_s)
            with self._lock:
                self.runs += 1
            log.info("worker: biz_id=%s %s", claim.biz_id, outcome.status)


__all__ = ["DEFAULT_IDLE_S", "Worker"]
