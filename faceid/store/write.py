"""The write path of the system of record: receive a body, keep it, then store it parsed.

``receive`` commits the body to the inbox in its own transaction *before* anything parses it;
``process`` turns an inbox row into a verification + write-once raw response + image rows +
audit entry + export line in a single transaction. A crash between the two loses nothing:
``process_pending`` picks the row up again. Storing is idempotent by biz_id.

Every call is a batch call underneath (decision 24): ``receive_many`` commits any number of
bodies in one transaction, ``process_many`` parses them outside any transaction (the parse
is the costly part, and on SQLite every transaction holds the writer lock), then writes the
whole batch in one transaction with multi-row inserts, one chain extension of the audit trail
and one export-line render. One bad document never costs the batch: if the batch's insert
fails, it is retried document by document, each in its own savepoint, and only the document
that fails again is kept in the inbox with why. ``receive``/``process``/``ingest`` are the
batch of one.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import BrokenExecutor, Executor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, insert, select, update
from sqlalchemy.exc import DataError, IntegrityError

from faceid.core.timeutil import utcnow
from faceid.store import audit
from faceid.store import export_lines as export
from faceid.store.db import chunks, insert_numbered, reader
from faceid.store.prepare import BIZ_ID_MAX, Case, Pending, parse_all, prepare
from faceid.store.tables import Inbox, RawResponse, StoredImage, Verification

log = logging.getLogger(__name__)

#: Bodies per write transaction when the store drains its inbox (``process_pending``). The
#: importer sizes its own batches (by count and bytes).
BATCH_SIZE = 200
#: Column widths the inbox and the verification must fit (PostgreSQL enforces them; SQLite
#: does not, so the store checks them itself and both databases behave the same); the
#: biz_id's, ``BIZ_ID_MAX``, is in ``prepare``.
_ORIGIN_MAX = Inbox.__table__.c.origin.type.length or 1024


@dataclass(frozen=True, slots=True)
class Stored:
    """Outcome of processing one body."""

    biz_id: str | None
    created: bool  # False: the biz_id was already stored (nothing changed)
    inbox_id: int
    error: str | None = None
    verification_id: int | None = None
    #: Fields of a newly stored result that did not fit the page (0 when not created).
    parse_flag_count: int = 0


@dataclass(frozen=True, slots=True)
class Body:
    """One body for ``receive_many`` / ``ingest_many``: what ``receive`` takes."""

    body: bytes
    source: str  # api | notify | import
    origin: str | None = None
    biz_id: str | None = None
    #: ``model.loads_document(body)`` when the caller already decoded it (the importer must,
    #: to unwrap callbacks and skip stored biz_ids): saves a second ``json.loads``.
    doc: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    #: Who received it (see ``Inbox.receiver``): set by a caller whose leftovers another
    #: process must tell from a live run's.
    receiver: str | None = None


_ACTIONS = {"api": "fetched", "notify": "received callback", "import": "imported"}


# --------------------------------------------------------------------------- single calls


def receive(engine: Engine, body: bytes, *, source: str, origin: str | None = None,
            biz_id: str | None = None) -> int:
    """Commit the body as received; return the inbox id. Never parses."""
    return receive_many(engine, [Body(body, source, origin, biz_id)])[0]


def process(engine: Engine, inbox_id: int, *, hash_key: bytes, actor: str = "system") -> Stored:
    """Parse and store one inbox row. A body that is not a result is kept with its error."""
    return process_many(engine, [inbox_id], hash_key=hash_key, actor=actor)[0]


def ingest(engine: Engine, body: bytes, *, source: str, hash_key: bytes,
           origin: str | None = None, actor: str = "system") -> Stored:
    """``receive`` then ``process``: the one call for a body in hand."""
    return ingest_many(engine, [Body(body, source, origin)], hash_key=hash_key, actor=actor)[0]


def process_pending(engine: Engine, *, hash_key: bytes, source: str | None = None,
                    actor: str = "system", batch_size: int = BATCH_SIZE,
                    left_behind: Callable[[str | None, datetime], bool] | None = None,
                    ) -> list[Stored]:
    """Finish every body received but not processed (after a crash), in batches; ``source``
    limits it to one path's bodies (the importer finishes its own, not a live worker's), and
    ``left_behind(receiver, received_at)`` to the rows no live process will finish itself."""
    t = Inbox.__table__
    stmt = (select(t.c.id, t.c.receiver, t.c.received_at).where(t.c.processed_at.is_(None))
            .order_by(t.c.id).limit(batch_size))
    if source is not None:
        stmt = stmt.where(t.c.source == source)
    out: list[Stored] = []
    last = 0
    while True:
        with reader(engine).begin() as conn:
            rows = conn.execute(stmt.where(t.c.id > last)).all()
        if not rows:
            return out
        ids = [r.id for r in rows
               if left_behind is None or left_behind(r.receiver, r.received_at)]
        if ids:
            out += process_many(engine, ids, hash_key=hash_key, actor=actor)
        last = rows[-1].id


# --------------------------------------------------------------------------- batch calls


def receive_many(engine: Engine, bodies: Sequence[Body]) -> list[int]:
    """Commit every body in one transaction (one multi-row insert); their inbox ids, in order.
    Never parses."""
    return [p.inbox_id for p in _receive(engine, bodies)]


def process_many(engine: Engine, inbox_ids: Sequence[int], *, hash_key: bytes,
                 actor: str = "system") -> list[Stored]:
    """Parse and store these inbox rows as one batch; one ``Stored`` per id, in order.

    Rows already processed (by an earlier run, or another worker) are reported as they are.
    Raises ``LookupError`` (before doing anything) if an id does not exist.
    """
    ids = list(inbox_ids)
    if not ids:
        return []
    t = Inbox.__table__
    # A snapshot read (no writer lock on SQLite): _write checks again under the lock.
    with reader(engine).begin() as conn:
        rows = {r.id: r for r in conn.execute(
            select(t.c.id, t.c.source, t.c.received_at, t.c.body, t.c.body_sha256,
                   t.c.processed_at, t.c.error, t.c.biz_id).where(t.c.id.in_(set(ids))))}
    for i in ids:
        if i not in rows:
            raise LookupError(f"inbox row {i} does not exist")
    out: dict[int, Stored] = {}
    pending: list[Pending] = []
    for i in dict.fromkeys(ids):
        r = rows[i]
        if r.processed_at is not None:
            out[i] = Stored(r.biz_id, False, i, r.error)
        elif r.body is None:
            out[i] = Stored(r.biz_id, False, i, "body missing")
        else:
            pending.append(Pending(i, r.source, r.received_at, r.body, r.body_sha256))
    out.update(_store(engine, pending, hash_key, actor))
    return [out[i] for i in ids]


def ingest_many(engine: Engine, bodies: Sequence[Body], *, hash_key: bytes,
                actor: str = "system", executor: Executor | None = None) -> list[Stored]:
    """``receive_many`` then ``process_many``, without reading the bodies back: one inbox
    transaction, then one store transaction for the batch. One ``Stored`` per body, in order.
    """
    return finish_ingest(engine, start_ingest(engine, bodies, hash_key=hash_key,
                                              executor=executor), actor=actor)


@dataclass(slots=True)
class Ingesting:
    """A batch whose bodies are committed to the inbox and whose parse is under way."""

    pending: list[Pending]
    cases: Iterator[Case | str]
    hash_key: bytes

    @classmethod
    def parsing(cls, pending: list[Pending], hash_key: bytes,
                executor: Executor | None = None) -> Ingesting:
        """Committed bodies whose parse starts now (in ``executor``) or lazily, when stored
        (a worker's store process rebuilds the batches it is sent this way)."""
        return cls(pending, parse_all(pending, hash_key, executor), hash_key)

    @classmethod
    def merged(cls, batches: Sequence[Ingesting]) -> Ingesting:
        """Several started batches as one, for ``finish_ingest`` to store in one transaction
        (a fetch worker commits each answer to the inbox as it comes, then stores them
        together)."""
        if not batches:
            raise ValueError("nothing to merge")
        return cls([p for b in batches for p in b.pending],
                   itertools.chain.from_iterable(b.cases for b in batches), batches[0].hash_key)


def start_ingest(engine: Engine, bodies: Sequence[Body], *, hash_key: bytes,
                 executor: Executor | None = None,
                 also: Callable[[Connection], None] | None = None) -> Ingesting:
    """First half of ``ingest_many``: commit the bodies to the inbox, then parse them, in
    ``executor`` (a process pool: parsing is pure Python, threads would not run it in
    parallel) without waiting, or here. A caller can store the previous batch meanwhile;
    ``finish_ingest`` stores this one. ``also`` writes in the inbox's transaction (the fetch
    ledger's outcome of the read that brought the body: one commit instead of two)."""
    return Ingesting.parsing(_receive(engine, bodies, also), hash_key, executor)


def finish_ingest(engine: Engine, batch: Ingesting, *, actor: str = "system") -> list[Stored]:
    """Second half of ``ingest_many``: wait for the parse, store the batch in one transaction.
    One ``Stored`` per body, in order."""
    pending = batch.pending
    if not pending:
        return []
    try:
        cases = list(batch.cases)
    except BrokenExecutor:
        # A parsing process died (killed, out of memory): parse here rather than lose the
        # batch. Its bodies are committed, so even failing here would lose nothing.
        log.warning("the parsing processes stopped; parsing %d document(s) here", len(pending))
        cases = [prepare(p.body, p.doc, batch.hash_key) for p in pending]
    for p in pending:
        p.doc = None  # parsed: the decoded document is not needed any more (memory)
    out = _write(engine, list(zip(pending, cases, strict=True)), actor)
    return [out[p.inbox_id] for p in pending]


def _receive(engine: Engine, bodies: Sequence[Body],
             also: Callable[[Connection], None] | None = None) -> list[Pending]:
    if not bodies:
        return []
    now = utcnow()
    t = Inbox.__table__
    rows = [{"biz_id": _label(b.biz_id), "source": b.source, "origin": _origin(b.origin),
             "received_at": now, "body": b.body, "receiver": b.receiver,
             "body_sha256": hashlib.sha256(b.body).hexdigest()} for b in bodies]
    with engine.begin() as conn:
        if also is not None:
            also(conn)
        ids = insert_numbered(conn, t, rows)
    return [Pending(i, b.source, now, b.body, r["body_sha256"], b.doc)
            for i, b, r in zip(ids, bodies, rows, strict=True)]


def _label(biz_id: str | None) -> str | None:
    # The inbox's biz_id only labels the row until it is parsed; one that cannot fit the column
    # must not cost the batch its commit (the parser refuses it with a reason).
    return biz_id if biz_id is None or len(biz_id) <= BIZ_ID_MAX else None


def _origin(origin: str | None) -> str | None:
    # A file path can be longer than the column (PATH_MAX is 4096); its end says the most.
    if origin is None or len(origin) <= _ORIGIN_MAX:
        return origin
    return "…" + origin[-(_ORIGIN_MAX - 1):]


def _store(engine: Engine, pending: list[Pending], hash_key: bytes,
           actor: str) -> dict[int, Stored]:
    """Parse outside any transaction, then write the batch."""
    if not pending:
        return {}
    return _write(engine, list(zip(pending, parse_all(pending, hash_key, None), strict=True)),
                  actor)



def _write(engine: Engine, batch: list[tuple[Pending, Case | str]],
           actor: str) -> dict[int, Stored]:
    """Store a parsed batch in one transaction: the cases, their export lines, one audit
    entry per new case (the chain extended once, in batch order), the inbox rows closed."""
    now = utcnow()
    out: dict[int, Stored] = {}
    done: list[dict[str, Any]] = []  # inbox rows stored or already had: body dropped
    refused: list[dict[str, Any]] = []  # inbox rows kept with their error
    with engine.begin() as conn:
        # First, before any insert: on PostgreSQL every store writer then holds the chain's
        # lock before it touches the biz_id index, so two batches with common biz_ids queue
        # instead of each waiting on the other's uncommitted rows while holding the lock the
        # other needs (a deadlock), and a batch sees what the one before it committed.
        audit.lock_chain(conn)
        t = Inbox.__table__
        taken = {r.id: r for r in conn.execute(
            select(t.c.id, t.c.biz_id, t.c.error).where(
                t.c.id.in_([p.inbox_id for p, _ in batch]), t.c.processed_at.is_not(None)))}
        todo: list[tuple[Pending, Case | str]] = []
        for p, case in batch:
            r = taken.get(p.inbox_id)
            if r is not None:  # processed by someone else while we parsed (a resumed run)
                out[p.inbox_id] = Stored(r.biz_id, False, p.inbox_id, r.error)
            else:
                todo.append((p, case))
        good = [(p, c) for p, c in todo if isinstance(c, Case)]
        existing = _existing(conn, [c.biz_id for _, c in good])
        new: dict[str, tuple[Pending, Case]] = {}
        for p, c in good:
            if c.biz_id not in existing:
                new.setdefault(c.biz_id, (p, c))  # the same biz_id twice: the first is stored
        created, failed = _insert_cases(conn, list(new.values()), existing, now)
        if created:
            # Same transaction: a case is never visible without its export line.
            export.keep_lines_fresh(conn, list(created.values()))
            audit.append_many(conn, actor, [
                (_ACTIONS.get(p.source, "imported"), c.biz_id, {"source": p.source,
                                                                "flags": c.flags})
                for p, c in new.values() if c.biz_id in created])
        for p, c in todo:
            if isinstance(c, str) or c.biz_id in failed:
                error = c if isinstance(c, str) else failed[c.biz_id]
                refused.append({"_id": p.inbox_id, "_error": error, "_at": now})
                out[p.inbox_id] = Stored(None if isinstance(c, str) else c.biz_id, False,
                                         p.inbox_id, error)
                continue
            is_new = c.biz_id in created and new[c.biz_id][0] is p
            vid = created[c.biz_id] if is_new else existing.get(c.biz_id, created.get(c.biz_id))
            # The payload now lives in raw_responses + images; keeping it here would double
            # the images. A duplicate (already stored) body is dropped for the same reason.
            done.append({"_id": p.inbox_id, "_biz": c.biz_id, "_at": now})
            out[p.inbox_id] = Stored(c.biz_id, is_new, p.inbox_id, None, vid,
                                     c.flags if is_new else 0)
        if done:
            conn.execute(update(t).where(t.c.id == bindparam("_id")).values(
                biz_id=bindparam("_biz"), processed_at=bindparam("_at"), body=None), done)
        if refused:
            conn.execute(update(t).where(t.c.id == bindparam("_id")).values(
                error=bindparam("_error"), processed_at=bindparam("_at")), refused)
    return out


def _existing(conn: Connection, biz_ids: Iterable[str]) -> dict[str, int]:
    v = Verification.__table__
    wanted = list(dict.fromkeys(biz_ids))
    out: dict[str, int] = {}
    for part in chunks(wanted):
        out.update((biz, vid) for biz, vid in conn.execute(
            select(v.c.biz_id, v.c.id).where(v.c.biz_id.in_(part))))
    return out


def _insert_cases(conn: Connection, new: list[tuple[Pending, Case]], existing: dict[str, int],
                  now: datetime) -> tuple[dict[str, int], dict[str, str]]:
    """Insert the batch's new cases: (biz_id -> verification id, biz_id -> why it failed).

    The whole batch in one savepoint first. If the database refuses any row (a value it
    cannot hold, a rival writer's biz_id), that savepoint is rolled back and each case is
    inserted in its own, so only the case that fails again is lost to the batch. A case whose
    biz_id a rival committed meanwhile goes into ``existing``: theirs stands.
    """
    if not new:
        return {}, {}
    try:
        with conn.begin_nested():
            return _insert_rows(conn, new, now), {}
    except (IntegrityError, DataError) as exc:
        log.warning("a batch of %d case(s) was refused (%s); storing them one by one",
                    len(new), type(exc).__name__)
    created: dict[str, int] = {}
    failed: dict[str, str] = {}
    for p, c in new:
        try:
            with conn.begin_nested():
                created.update(_insert_rows(conn, [(p, c)], now))
        except (IntegrityError, DataError) as exc:
            rival = _existing(conn, [c.biz_id])
            if rival:
                existing.update(rival)
                continue
            # Type only: the database's message can quote the row's values (names, numbers).
            log.error("a case could not be stored (%s); kept in the inbox", type(exc).__name__)
            failed[c.biz_id] = f"could not be stored ({type(exc).__name__})"
    return created, failed


def _insert_rows(conn: Connection, cases: list[tuple[Pending, Case]],
                 now: datetime) -> dict[str, int]:
    v, raw, img = Verification.__table__, RawResponse.__table__, StoredImage.__table__
    vids = insert_numbered(conn, v, [{**c.columns, "source": p.source, "stored_at": now}
                                     for p, c in cases])
    conn.execute(insert(raw), [
        {"verification_id": vid, "body": c.raw_body, "original_sha256": p.body_sha256,
         "original_size": len(p.body), "received_at": p.received_at}
        for vid, (p, c) in zip(vids, cases, strict=True)])
    images = [{**row, "verification_id": vid}
              for vid, (_, c) in zip(vids, cases, strict=True) for row in c.images]
    if images:
        conn.execute(insert(img), images)
    return {c.biz_id: vid for vid, (_, c) in zip(vids, cases, strict=True)}


# --------------------------------------------------------------------------- reading


def raw_document(engine: Engine, biz_id: str) -> dict | None:
    """The stored raw response (images elided), as a dict."""
    v, raw = Verification.__table__, RawResponse.__table__
    with reader(engine).begin() as conn:
        body = conn.execute(select(raw.c.body).join(v, v.c.id == raw.c.verification_id)
                            .where(v.c.biz_id == biz_id)).scalar()
    return json.loads(body) if body is not None else None


def stored_biz_ids(engine: Engine, biz_ids: list[str]) -> set[str]:
    with reader(engine).begin() as conn:
        return set(_existing(conn, biz_ids))
