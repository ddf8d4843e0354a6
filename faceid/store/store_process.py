"""A worker's answers stored by a child process of its own (decision 31).

A worker's run threads wait on FaceID and hand each request slot to the next request the
moment an answer is in (decision 29); storing the answers (parse, images, cases, export lines,
audit chain) is the ``AnswerBatcher``'s. In one process the two share one GIL: while the
batcher parses and writes, a thread whose answer has arrived waits for the GIL before it can
read the response and pass its slot on, and every request cycle gets longer. On PostgreSQL,
where each statement also gives the GIL up and takes it back, that cost the fetch a tenth of
its throughput at 50 ms (bench/README.md). A child process has its own interpreter, and the
operating system, unlike the GIL, lets a thread that wakes from I/O run before a busy one.

What crosses the pipe is what was already committed: each answer's inbox row (id, bytes,
sha256), its job's claim and the ledger's call count. The child rebuilds the batch, stores it
with ``FetchService.store_answers`` (same transaction, same job outcomes: the child's queue
speaks for this process's lease owner) and sends the outcomes back. It never reads FaceID and
never receives the FaceID credentials.

If the child is gone (killed, crashed) or fails a batch, that batch and every later one are
stored here, as without a child: the answers are in the inbox, the store is idempotent by inbox
row and biz_id, and job outcomes are written only by the lease owner of a running job, so a
batch the child stored before it died is not stored twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path

from sqlalchemy import Engine

from faceid.core.config import Settings
from faceid.core.errors import ConfigError
from faceid.store import write as store
from faceid.store.fetch_jobs import Claim
from faceid.store.fetch_outcomes import Answer, FetchOutcome, Received
from faceid.store.fetchqueue import FetchQueue
from faceid.store.prepare import Pending

log = logging.getLogger(__name__)

#: ``Settings.store_process`` unset: a child store on PostgreSQL with two cores or more. Not
#: on SQLite: one file has one writer, and a second process's writes could no longer be put
#: behind the slot holders' (``db.urgent``); measured, the child gained 0.02 there (0.90 ->
#: 0.92 of C/L at 50 ms), where the store in the worker already meets 0.9.
AUTO_ON_POSTGRESQL = True
#: Environment variables the child must not inherit (it reads neither FaceID nor settings).
_WITHHELD_ENV = ("FACEID_API_KEY", "FACEID_API_SECRET", "DATABASE_URL")


def wanted(engine: Engine, settings: Settings) -> bool:
    """Whether a worker on ``engine`` stores its answers in a child process."""
    if engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:"):
        return False  # one process's memory: a child would see another database
    if settings.store_process is not None:
        return settings.store_process
    return (AUTO_ON_POSTGRESQL and engine.dialect.name == "postgresql"
            and (os.cpu_count() or 1) >= 2)


@dataclass(frozen=True, slots=True)
class Setup:
    """The child's first message: where and as whom to store (no FaceID credentials)."""

    database_url: str
    settings: Settings
    owner: str
    cap: int
    lease_s: float
    retry_delay_s: float


@dataclass(frozen=True, slots=True)
class Parcel:
    """One received answer, as the child needs it (``Received`` without its lazy parse)."""

    claim: Claim
    actor: str
    retry_in_s: float | None
    pending: list[Pending]
    http_status: int | None
    calls: int

    @classmethod
    def of(cls, r: Received) -> Parcel:
        # The decoded document (if any) is not sent: the child decodes the bytes again,
        # which costs less than pickling the dict.
        pending = [replace(p, doc=None) for p in r.answer.ingesting.pending]
        return cls(r.claim, r.actor, r.retry_in_s, pending, r.answer.http_status,
                   r.answer.calls)

    def received(self, hash_key: bytes) -> Received:
        return Received(self.claim, self.actor, self.retry_in_s, Answer(
            store.Ingesting.parsing(self.pending, hash_key), self.http_status, self.calls))


def child_settings(settings: Settings) -> Settings | None:
    """What the child is told of the settings: no FaceID credentials, and the ID-number hash
    key spelled out (without credentials it would otherwise take the demo key). None if
    there is no hash key to give (the store here raises the configuration error)."""
    try:
        key = settings.hash_key()
    except ConfigError:
        return None
    return replace(settings, api_key=None, api_secret=None, pii_key=key.decode())


class StoreProcess:
    """The child, seen from the worker: ``store_answers`` is the batcher's store."""

    def __init__(self, engine: Engine, settings: Settings, queue: FetchQueue, *,
                 retry_delay_s: float,
                 fallback: Callable[[list[Received]], list[FetchOutcome]]) -> None:
        self._engine, self._settings, self._queue = engine, settings, queue
        self._retry_delay_s = retry_delay_s
        self._fallback = fallback
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        #: Batches the child stored, and those stored here after it failed or went.
        self.batches = 0
        self.fallbacks = 0

    @property
    def alive(self) -> bool:
        return self._conn is not None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> StoreProcess:
        """Start the child and send it its setup (returns at once: it imports meanwhile)."""
        mine, theirs = socket.socketpair()
        root = str(Path(__file__).resolve().parents[2])
        env = {k: v for k, v in os.environ.items() if k not in _WITHHELD_ENV}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        try:
            # Our own interpreter and module, no shell, no input in the arguments.
            self._proc = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "faceid.store.store_child", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env, cwd=root)
        except OSError:
            mine.close()
            raise
        finally:
            theirs.close()
        self._conn = Connection(mine.detach())
        # The database URL (password included) goes down the socket, never into argv or the
        # environment, where ``ps`` and /proc would show it.
        self._send(Setup(self._engine.url.render_as_string(hide_password=False),
                         self._settings, self._queue.owner, self._queue.cap,
                         self._queue.lease_s, self._retry_delay_s))
        return self

    def store_answers(self, received: list[Received]) -> list[FetchOutcome]:
        """Store a batch in the child; here if the child is gone or failed it."""
        reply: object = None
        if self._send([Parcel.of(r) for r in received]):
            reply = self._recv()
        if isinstance(reply, list) and len(reply) == len(received):
            # The child finished the jobs (as this process's lease owner): stop renewing them.
            for r in received:
                self._queue.forget(r.claim)
            self.batches += 1
            return reply
        if isinstance(reply, str):
            log.error("the store process failed a batch of %d (%s); storing it here",
                      len(received), reply)
        self.fallbacks += 1
        return self._fallback(received)

    def close(self, timeout: float = 30.0) -> None:
        """Tell the child to stop after its current batch; kill it if it does not."""
        self._send(None)
        self._drop()
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def _send(self, message: object) -> bool:
        if self._conn is None:
            return False
        try:
            self._conn.send(message)
            return True
        except OSError:
            self._gone()
            return False

    def _recv(self) -> object:
        assert self._conn is not None
        try:
            return self._conn.recv()
        except (EOFError, OSError):
            self._gone()
            return None

    def _gone(self) -> None:
        code = self._proc.poll() if self._proc is not None else None
        log.warning("the store process stopped (exit code %s); this worker stores its answers "
                    "itself from now on", code)
        self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None


__all__ = ["AUTO_ON_POSTGRESQL", "Parcel", "Setup", "StoreProcess", "child_settings",
           "wanted"]
