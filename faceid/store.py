"""The write path of the system of record: receive a body, keep it, then store it parsed.

``receive`` commits the body to the inbox in its own transaction *before* anything parses
it; ``process`` turns one inbox row into a verification + write-once raw response + image
rows in a single transaction. A crash between the two loses nothing: ``process_pending``
picks the row up again. Storing is idempotent by biz_id.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from faceid import audit, export, summary, vocab
from faceid.errors import DocumentError
from faceid.model import GetResult, elide_images, loads_document, parse_document
from faceid.tables import Inbox, RawResponse, StoredImage, Verification
from faceid.timeutil import from_unix, utcnow


@dataclass(frozen=True, slots=True)
class Stored:
    """Outcome of processing one body."""

    biz_id: str | None
    created: bool  # False: the biz_id was already stored (nothing changed)
    inbox_id: int
    error: str | None = None
    verification_id: int | None = None


_ACTIONS = {"api": "fetched", "notify": "received callback", "import": "imported"}


def receive(engine: Engine, body: bytes, *, source: str, origin: str | None = None,
            biz_id: str | None = None) -> int:
    """Commit the body as received; return the inbox id. Never parses."""
    with Session(engine) as s:
        row = Inbox(biz_id=biz_id, source=source, origin=origin, received_at=utcnow(),
                    body=body, body_sha256=hashlib.sha256(body).hexdigest())
        s.add(row)
        s.commit()
        assert row.id is not None
        return row.id


def process(engine: Engine, inbox_id: int, *, hash_key: bytes, actor: str = "system") -> Stored:
    """Parse and store one inbox row. A body that is not a result is kept with its error.

    Parsing and image checks run between two short transactions, not inside the write one:
    on SQLite every transaction holds the writer lock (BEGIN IMMEDIATE), and decoding a few
    JPEGs while holding it would stall every other writer.
    """
    with Session(engine) as s:
        row = s.get(Inbox, inbox_id)
        if row is None:
            raise LookupError(f"inbox row {inbox_id} does not exist")
        if row.processed_at is not None:
            return Stored(row.biz_id, False, inbox_id, row.error)
        if row.body is None:
            return Stored(row.biz_id, False, inbox_id, "body missing")
        body = row.body
    try:
        doc = loads_document(body)
        parsed = parse_document(doc)
    except DocumentError as exc:
        return _refuse(engine, inbox_id, str(exc))
    raw_body = json.dumps(elide_images(doc, image_refs(parsed)), ensure_ascii=False)
    with Session(engine) as s:
        row = s.get(Inbox, inbox_id)
        if row is None or row.processed_at is not None:
            # Processed by someone else while we parsed (a resumed run racing a worker).
            return Stored(parsed.biz_id, False, inbox_id, row.error if row else "gone")
        existing = s.exec(select(Verification).where(Verification.biz_id == parsed.biz_id)).first()
        if existing is not None:
            created, vid = False, existing.id
        else:
            try:
                v = _insert(s, parsed, raw_body, body, row.source, row.received_at, hash_key)
            except IntegrityError:
                # Another writer stored the same biz_id between our check and insert (possible
                # on PostgreSQL; SQLite's BEGIN IMMEDIATE serialises): theirs stands.
                s.rollback()
                return process(engine, inbox_id, hash_key=hash_key, actor=actor)
            audit.record(s, actor, _ACTIONS.get(row.source, "imported"), parsed.biz_id,
                         {"source": row.source, "flags": len(parsed.flags)})
            created, vid = True, v.id
        row.biz_id = parsed.biz_id
        row.processed_at = utcnow()
        # The payload now lives in raw_responses + images; keeping it here would double the
        # images. A duplicate (already stored) body is dropped for the same reason.
        row.body = None
        s.add(row)
        s.commit()
        return Stored(parsed.biz_id, created, inbox_id, None, vid)


def _refuse(engine: Engine, inbox_id: int, error: str) -> Stored:
    """Keep a body that is not a result, with why, for a person to look at."""
    with Session(engine) as s:
        row = s.get(Inbox, inbox_id)
        if row is None or row.processed_at is not None:
            return Stored(row.biz_id if row else None, False, inbox_id, error)
        row.error = error
        row.processed_at = utcnow()
        s.add(row)
        s.commit()
        return Stored(row.biz_id, False, inbox_id, error)


def image_refs(parsed: GetResult) -> dict[str, str]:
    """Response key -> sha256 of each image the parser already decoded (saves a second
    decode in ``elide_images``)."""
    refs = {vocab.IMAGE_KEYS.get(kind, f"image_{kind}"): img.sha256
            for kind, img in parsed.images.items() if img.ok and img.sha256}
    mf = parsed.multifaces_image
    if mf is not None and mf.ok and mf.sha256:
        refs["multifaces_image"] = mf.sha256
    return refs


def ingest(engine: Engine, body: bytes, *, source: str, hash_key: bytes,
           origin: str | None = None, actor: str = "system") -> Stored:
    """``receive`` then ``process``: the one call for a body in hand."""
    return process(engine, receive(engine, body, source=source, origin=origin),
                   hash_key=hash_key, actor=actor)


def process_pending(engine: Engine, *, hash_key: bytes) -> list[Stored]:
    """Finish every body received but not processed (after a crash)."""
    with Session(engine) as s:
        ids = s.exec(select(Inbox.id).where(col(Inbox.processed_at).is_(None))
                     .order_by(col(Inbox.id))).all()
    return [process(engine, i, hash_key=hash_key) for i in ids if i is not None]


def _insert(s: Session, parsed: GetResult, raw_body: str, original: bytes, source: str,
            received_at: datetime, hash_key: bytes) -> Verification:
    now = utcnow()
    v = Verification(**summary.columns(parsed, hash_key), source=source,
                     verified_at=from_unix(parsed.verify_time), stored_at=now)
    s.add(v)
    s.flush()
    assert v.id is not None
    s.add(RawResponse(
        verification_id=v.id,
        body=raw_body,
        original_sha256=hashlib.sha256(original).hexdigest(),
        original_size=len(original),
        received_at=received_at,
    ))
    for img in parsed.all_images():
        s.add(StoredImage(verification_id=v.id, kind=img.kind, sha256=img.sha256, size=img.size,
                          width=img.width, height=img.height, mime=img.mime, error=img.error,
                          data=img.data))
    s.flush()
    # Same transaction: the case is never visible without its export line.
    export.keep_lines_fresh(s.connection(), [v.id])
    return v


def raw_document(engine: Engine, biz_id: str) -> dict | None:
    """The stored raw response (images elided), as a dict."""
    with Session(engine) as s:
        row = s.exec(select(RawResponse).join(Verification)
                     .where(Verification.biz_id == biz_id)).first()
        return json.loads(row.body) if row else None


def stored_biz_ids(engine: Engine, biz_ids: list[str]) -> set[str]:
    out: set[str] = set()
    with Session(engine) as s:
        for i in range(0, len(biz_ids), 500):
            chunk = biz_ids[i:i + 500]
            out.update(s.exec(select(Verification.biz_id)
                              .where(col(Verification.biz_id).in_(chunk))).all())
    return out
