"""The audit trail: append-only (database triggers), hash-chained, UTC, actor/action/case.

Each entry's hash covers its content and the previous entry's hash, so rewriting or deleting
any row (by someone who got past the triggers) breaks every later link, and
``verify_chain`` names the first broken one. Appends are serialised: on SQLite by the
``BEGIN IMMEDIATE`` every transaction takes; on PostgreSQL by a transaction-level advisory
lock, so two writers cannot both chain onto the same predecessor.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from faceid.core.timeutil import iso, utcnow
from faceid.store.db import insert_numbered
from faceid.store.tables import AuditEvent

GENESIS = "0" * 64
_PG_LOCK_KEY = 0x46414345  # "FACE": the advisory lock that serialises chain appends


def _digest(prev_hash: str, event: AuditEvent) -> str:
    return _chain_hash(prev_hash, event.at, event.actor, event.action, event.biz_id,
                       event.detail)


def _chain_hash(prev_hash: str, at: datetime | None, actor: str, action: str,
                biz_id: str | None, detail: str | None) -> str:
    payload = json.dumps(
        [prev_hash, iso(at), at.microsecond if at else 0, actor, action, biz_id, detail],
        ensure_ascii=False, separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _detail_text(detail: dict[str, Any] | str | None) -> str | None:
    if isinstance(detail, dict):
        return json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str)
    return detail


def lock_chain(conn: Connection) -> None:
    """Serialise chain appends until the caller's transaction ends (PostgreSQL; SQLite's
    ``BEGIN IMMEDIATE`` already did). Taking it again in the same transaction is harmless."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})


def record(
    session: Session, actor: str, action: str, biz_id: str | None = None,
    detail: dict[str, Any] | str | None = None,
) -> AuditEvent:
    """Append one event in the caller's transaction (commit is the caller's)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    last = session.exec(select(AuditEvent).order_by(col(AuditEvent.id).desc()).limit(1)).first()
    prev = last.entry_hash if last else GENESIS
    detail = _detail_text(detail)
    event = AuditEvent(at=utcnow(), actor=actor, action=action, biz_id=biz_id, detail=detail,
                       prev_hash=prev, entry_hash="")
    event.entry_hash = _digest(prev, event)
    session.add(event)
    session.flush()
    return event


def append_many(conn: Connection, actor: str,
                entries: Sequence[tuple[str, str | None, dict[str, Any] | str | None]]) -> int:
    """Append ``(action, biz_id, detail)`` entries in order, in the caller's transaction: the
    chain's head is read once and extended in memory, then one multi-row insert. The same
    entries ``record`` would write one by one (same hashes), at a batch's cost."""
    if not entries:
        return 0
    lock_chain(conn)
    t = AuditEvent.__table__
    prev = conn.execute(core_select(t.c.entry_hash).order_by(t.c.id.desc()).limit(1)
                        ).scalar() or GENESIS
    at = utcnow()
    rows = []
    for action, biz_id, detail in entries:
        text_detail = _detail_text(detail)
        entry = _chain_hash(prev, at, actor, action, biz_id, text_detail)
        rows.append({"at": at, "actor": actor, "action": action, "biz_id": biz_id,
                     "detail": text_detail, "prev_hash": prev, "entry_hash": entry})
        prev = entry
    # verify_chain walks entries by id: insert_numbered gives ids in the chain's order.
    insert_numbered(conn, t, rows)
    return len(rows)


@dataclass(frozen=True, slots=True)
class ChainReport:
    ok: bool
    checked: int
    first_broken_id: int | None = None
    problem: str | None = None

    def describe(self) -> str:
        if self.ok:
            return f"Audit chain intact: {self.checked} entries checked."
        return (f"Audit chain BROKEN at entry id {self.first_broken_id}: {self.problem} "
                f"({self.checked} entries checked before it).")


def _events(session: Session, batch: int = 1000) -> Iterator[AuditEvent]:
    last_id = 0
    while True:
        rows = session.exec(select(AuditEvent).where(col(AuditEvent.id) > last_id)
                            .order_by(col(AuditEvent.id)).limit(batch)).all()
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id or last_id


def verify_chain(session: Session) -> ChainReport:
    prev = GENESIS
    checked = 0
    for event in _events(session):
        if event.prev_hash != prev:
            return ChainReport(False, checked, event.id, "its prev_hash does not match the "
                               "previous entry (an entry was removed or reordered)")
        if _digest(prev, event) != event.entry_hash:
            return ChainReport(False, checked, event.id, "its content does not match its hash "
                               "(the entry was altered)")
        prev = event.entry_hash
        checked += 1
    return ChainReport(True, checked)


def timeline(session: Session, biz_id: str) -> list[AuditEvent]:
    return list(session.exec(select(AuditEvent).where(AuditEvent.biz_id == biz_id)
                             .order_by(col(AuditEvent.id))).all())
