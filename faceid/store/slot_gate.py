"""How one process's threads share its request slots (``SlotGate``), and the hand-over of a
slot from a request that has its answer to a thread waiting to send the next (decision 29).

The deployment-wide cap lives in the database (``fetch_slots``, taken by the ledger); the gate
keeps more threads of this process than it may have requests in flight from spinning on write
transactions that cannot succeed, and takes the database off the path between two requests on
a slot: a thread that must wait first commits its request to the ledger (``before_wait``), and
a thread that has FaceID's answer hands its slot straight to the longest-waiting one
(``Held.pass_on``), which sends at once; the answer is committed after that. The slot is never
free in between, for this process or another.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class Stopped(Exception):
    """The gate was stopped (an answer showed every call would be refused): send no more."""


class _Turn:
    """A thread waiting for a permit, with the ledger of the request it will send. Each turn
    has a lock of its own to sleep on, so a grant wakes the one thread it is for (a shared
    condition woke every waiter, and they all queued for the GIL the answer's thread needs)."""

    __slots__ = ("_asleep", "ledger")

    def __init__(self, ledger: Any) -> None:
        self.ledger = ledger
        self._asleep = threading.Lock()
        self._asleep.acquire()

    def grant(self) -> None:
        """The permit moves to this turn: never free in between."""
        self._asleep.release()

    def wait(self) -> None:
        self._asleep.acquire()


class Held:
    """One thread's permit while its request is out (``SlotGate.hold``)."""

    __slots__ = ("_gate", "passed")

    def __init__(self, gate: SlotGate) -> None:
        self._gate = gate
        #: The permit went to a waiting thread before the hold ended.
        self.passed = False

    def pass_on(self, give: Callable[[Any], None]) -> bool:
        """Hand the permit to the longest-waiting thread now, calling ``give`` with its
        ledger first (to pass it the database slot); False if no thread waits (the permit
        then stays until the hold ends)."""
        if self.passed:
            return False
        turn = self._gate._next_waiter()
        if turn is None:
            return False
        try:
            give(turn.ledger)
        finally:
            self.passed = True
            turn.grant()
        return True


class SlotGate:
    """``size`` permits, handed to waiting threads first come, first served. With ``stop``,
    an exception of a ``fatal`` type leaving a hold sets it before the permit moves on, and a
    stopped gate raises ``Stopped`` instead of letting a thread send (``fetch_many``: bad
    credentials would fail every other call the same way)."""

    def __init__(self, size: int, *, stop: threading.Event | None = None,
                 fatal: tuple[type[BaseException], ...] = ()) -> None:
        self._lock = threading.Lock()
        self._free = max(1, size)
        self._waiting: deque[_Turn] = deque()
        self._stop, self._fatal = stop, fatal

    @property
    def waiting(self) -> int:
        """Threads waiting for a permit now."""
        with self._lock:
            return len(self._waiting)

    @contextmanager
    def hold(self, ledger: Any = None, *,
             before_wait: Callable[[], None] | None = None) -> Iterator[Held]:
        """Wait for a permit, then hold it for the block. If none is free, ``before_wait``
        runs first (outside the gate's lock; it may raise, and then nothing is held);
        ``ledger`` is what a thread passing its permit on hands its slot to."""
        self._enter(ledger, before_wait)
        held = Held(self)
        try:
            if self._stop is not None and self._stop.is_set():
                raise Stopped
            yield held
        except BaseException as exc:
            if self._stop is not None and isinstance(exc, self._fatal):
                self._stop.set()
            raise
        finally:
            if not held.passed:
                self._leave()

    def _enter(self, ledger: Any, before_wait: Callable[[], None] | None) -> None:
        with self._lock:
            if self._free > 0 and not self._waiting:
                self._free -= 1
                return
        if before_wait is not None:
            before_wait()
        with self._lock:
            if self._free > 0 and not self._waiting:  # freed meanwhile
                self._free -= 1
                return
            turn = _Turn(ledger)
            self._waiting.append(turn)
        turn.wait()

    def _next_waiter(self) -> _Turn | None:
        with self._lock:
            return self._waiting.popleft() if self._waiting else None

    def _leave(self) -> None:
        with self._lock:
            if self._waiting:
                self._waiting.popleft().grant()
            else:
                self._free += 1


__all__ = ["Held", "SlotGate", "Stopped"]
