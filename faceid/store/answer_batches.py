"""Store fetched answers in small batches, off the threads that wait on FaceID.

Storing one answer at a time costs a write transaction, an audit-chain extension and an
export-line render per answer, on the threads that should be sending the next request: at a
short latency the request slots then idle behind the store (issue 11). ``run_claim`` instead
commits each answer to the inbox (raw first, as always) and hands it to an ``AnswerBatcher``:
one thread per worker that stores whatever has arrived since its last batch, in one
transaction (``FetchService.store_answers``), and records the jobs' outcomes in one more.
A batch waits a moment (``LINGER_S``) for more answers, unless ``flush`` says none are coming
(the worker's last busy thread went idle); ``close`` stores what is left at once.

A crash between the two loses nothing: the answers are in the inbox, their jobs' leases lapse,
and the next run for each biz_id stores its answer without reading FaceID again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

# Generic over what it stores, so this module needs nothing from ``fetching`` (whose batches and
# worker use it): there, Item is ``fetch_outcomes.Received`` and Result
# ``fetch_outcomes.FetchOutcome``.
Item = TypeVar("Item")
Result = TypeVar("Result")

log = logging.getLogger(__name__)

#: Answers per store transaction at most: past a few dozen a bigger batch no longer pays, and
#: a smaller one finishes its jobs sooner.
MAX_BATCH = 32
#: How long a batch waits for more answers once it has one. The request slots are already
#: free by then (only the job's outcome waits), and fuller batches cost less per answer: the
#: store's fixed cost per transaction is several times that of one answer (bench/README.md).
LINGER_S = 0.05


class _Flush:
    """``flush``'s marker in the queue: store what has arrived without lingering."""


_FLUSH = _Flush()


class AnswerBatcher(Generic[Item, Result]):
    """A thread storing the answers ``put`` to it, a batch at a time, then calling
    ``on_done(received, outcome)`` for each. ``close`` stores what is left and stops."""

    def __init__(self, store_answers: Callable[[list[Item]], list[Result]],
                 on_done: Callable[[Item, Result], None] | None = None, *,
                 max_batch: int = MAX_BATCH, linger_s: float = LINGER_S,
                 name: str = "faceid-store") -> None:
        self._store, self._on_done, self._max = store_answers, on_done, max(1, max_batch)
        self._linger = linger_s
        self._queue: queue.SimpleQueue[Item | _Flush | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)
        self.batches = 0
        self.stored = 0

    def start(self) -> AnswerBatcher[Item, Result]:
        self._thread.start()
        return self

    def put(self, item: Item) -> None:
        self._queue.put(item)

    def flush(self) -> None:
        """No more answers are coming for now: a batch waiting for more is stored at once."""
        self._queue.put(_FLUSH)

    def close(self, timeout: float | None = None) -> None:
        """Store every answer put so far, then stop the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    def _run(self) -> None:
        closing = False
        while not closing:
            first = self._queue.get()
            if first is None:
                return
            if isinstance(first, _Flush):
                continue
            batch: list[Item] = [first]
            until = time.monotonic() + self._linger
            while len(batch) < self._max:
                try:
                    more = self._queue.get(timeout=max(0.0, until - time.monotonic()))
                except queue.Empty:
                    break
                if more is None:
                    closing = True
                    break
                if isinstance(more, _Flush):
                    break
                batch.append(more)
            self._store_batch(batch)

    def _store_batch(self, batch: list[Item]) -> None:
        try:
            outcomes = self._store(batch)
        except Exception as exc:  # store_answers answers for the database; this is a bug
            log.error("storing %d answer(s) failed (%s); they wait in the inbox", len(batch),
                      type(exc).__name__, exc_info=True)
            return
        self.batches += 1
        self.stored += len(batch)
        if self._on_done is None:
            return
        for item, outcome in zip(batch, outcomes, strict=True):
            try:
                self._on_done(item, outcome)
            except Exception:
                log.error("an answer's outcome callback failed", exc_info=True)


__all__ = ["MAX_BATCH", "AnswerBatcher"]
