"""Engine construction. The engine is always injected: no module-level engine exists.

SQLite (the embedded default) gets, per connection: WAL, foreign keys, a busy timeout, and
``BEGIN IMMEDIATE`` for every transaction — a transaction that reads and then writes under
plain ``BEGIN`` fails at once with "database is locked" when another writer is active, busy
timeout or not (field notes: 193 of 240 failed from 6 threads; 0 with BEGIN IMMEDIATE).
PostgreSQL is selected by a ``postgresql+psycopg://`` DATABASE_URL.
"""

from __future__ import annotations

import contextlib
import contextvars
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Table, event, func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import StaticPool
from sqlmodel import create_engine

from faceid.core.errors import ConfigError

SQLITE_BUSY_TIMEOUT_S = 15

T = TypeVar("T")


def normalise_url(url: str) -> str:
    """Accept the common spellings of a PostgreSQL URL and route them to psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str, *, echo: bool = False) -> Engine:
    url = normalise_url(url)
    try:
        parsed = make_url(url)
    except Exception:
        raise ConfigError("DATABASE_URL is not a valid database URL.") from None
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database, echo=echo)
    if parsed.get_backend_name() == "postgresql":
        return create_engine(url, echo=echo, pool_pre_ping=True, hide_parameters=True)
    raise ConfigError(f"Unsupported database {parsed.get_backend_name()!r}: use SQLite or "
                      "PostgreSQL.")


#: Execution option marking an engine or connection as read-only (see ``reader``).
READ_ONLY_OPTION = "faceid_read_only"


def reader(engine: Engine) -> Engine:
    """The same engine for transactions that only read. On SQLite they begin without taking
    the writer lock (a write in one fails with "database is locked" instead of waiting, so
    use it for reads only); on PostgreSQL nothing changes."""
    return engine.execution_options(**{READ_ONLY_OPTION: True})


def memory_engine() -> Engine:
    """An in-memory SQLite shared by every session of the process (tests, benchmarks)."""
    return _sqlite_engine("sqlite://", None, memory=True)


def _sqlite_engine(url: str, database: str | None, *, echo: bool = False,
                   memory: bool = False) -> Engine:
    memory = memory or database in (None, "", ":memory:")
    kwargs: dict[str, Any] = {
        "connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
        "hide_parameters": True,
    }
    if memory:
        kwargs["poolclass"] = StaticPool
    elif database:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, echo=echo, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, emit BEGIN (pysqlite would emit a deferred BEGIN).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cur.close()

    # One writer at a time inside this process, queued on a lock: SQLite's own busy handler
    # makes a waiting writer *sleep* (1, 2, 5 … up to 100 ms a try), so a dozen threads
    # taking turns on the writer lock spent most of their time asleep beside a free database
    # (issue 11). Other processes still meet the busy handler; the lock only orders ours.
    # Not for the in-memory engine: its one shared connection is never used by two at once.
    writer = None if memory else WriterQueue()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A reader that never writes (``reader(engine)``) takes a plain BEGIN: in WAL mode a
        # read snapshot neither waits for the writer nor holds it up, and pollers (the fetch
        # queue's waiters, the desk's lookups) would otherwise queue behind every store.
        read_only = conn.get_execution_options().get(READ_ONLY_OPTION)
        if read_only or writer is None:
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
            return
        if not writer.acquire(timeout=SQLITE_BUSY_TIMEOUT_S, urgent=_URGENT.get()):
            # What SQLite itself says after its busy timeout.
            raise OperationalError("BEGIN IMMEDIATE", None,
                                   sqlite3.OperationalError("database is locked"))
        conn.info[_WRITER_KEY] = writer
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _let_writer_go(conn.info)
            raise

    if writer is not None:
        # Fired just before COMMIT/ROLLBACK is sent; the next writer's BEGIN IMMEDIATE then
        # waits at most for that statement. Check-in is the safety net (a connection closed
        # or invalidated mid-transaction).
        event.listen(engine, "commit", lambda conn: _let_writer_go(conn.info))
        event.listen(engine, "rollback", lambda conn: _let_writer_go(conn.info))
        event.listen(engine.pool, "checkin", lambda _dbapi, record: _let_writer_go(record.info))
    return engine


_WRITER_KEY = "faceid_sqlite_writer"

_URGENT: contextvars.ContextVar[bool] = contextvars.ContextVar("faceid_urgent_write",
                                                                default=False)


@contextlib.contextmanager
def urgent() -> Iterator[None]:
    """Transactions begun inside go first among this process's waiting SQLite writers."""
    token = _URGENT.set(True)
    try:
        yield
    finally:
        _URGENT.reset(token)


class WriterQueue:
    """A lock whose urgent waiters are served before the others."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._held = False
        self._urgent_waiting = 0

    def acquire(self, timeout: float = -1, urgent: bool = False) -> bool:
        deadline = None if timeout < 0 else time.monotonic() + timeout
        with self._cond:
            if urgent:
                self._urgent_waiting += 1
            try:
                while self._held or (not urgent and self._urgent_waiting):
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._cond.wait(left)
                self._held = True
                return True
            finally:
                if urgent:
                    self._urgent_waiting -= 1

    def release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()


def _let_writer_go(info: dict[str, Any]) -> None:
    lock = info.pop(_WRITER_KEY, None)
    if lock is not None:
        lock.release()


#: Values per ``IN (...)`` list: far under every driver's bound-parameter limit (SQLite's
#: 32766, PostgreSQL's 65535) whatever else the statement binds.
IN_CHUNK = 500


def chunks(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """``items`` in slices of ``size``, for ``IN (...)`` queries over any number of keys."""
    for i in range(0, len(items), size):
        yield items[i:i + size]


def insert_numbered(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` into ``table`` (integer primary key ``id``) in one batch; their ids, in
    row order, ascending (the audit chain's order is its ids' order).

    PostgreSQL: one ``INSERT … RETURNING`` that SQLAlchemy renders so the sequence follows the
    rows (``sort_by_parameter_order``). SQLite: SQLAlchemy can only do that one row per
    statement, so the ids are assigned here instead (max + 1 …) and the rows go through
    sqlite3's ``executemany``. Safe because every transaction on our SQLite engines is
    ``BEGIN IMMEDIATE``: the caller holds the writer lock, nobody else can take an id.
    """
    if not rows:
        return []
    pk = table.c.id
    if conn.dialect.name == "sqlite":
        first = (conn.execute(select(func.max(pk))).scalar() or 0) + 1
        ids = list(range(first, first + len(rows)))
        conn.execute(insert(table), [{**row, "id": i} for row, i in zip(rows, ids, strict=True)])
        return ids
    ids = list(conn.execute(insert(table).returning(pk, sort_by_parameter_order=True),
                            list(rows)).scalars())
    if any(b <= a for a, b in zip(ids, ids[1:], strict=False)):
        # Never seen; checked because a chain numbered out of order would not verify.
        raise RuntimeError(f"{table.name}: ids were not assigned in row order")
    return ids
