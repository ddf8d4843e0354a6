"""A refetch's answer against the stored copy: the store is write-once, so a second read of
a stored biz_id (a person's explicit refetch) is compared, audited and reported, never stored
over the first (``record_refetch``; ``FetchService`` calls it).
"""

from __future__ import annotations

import hashlib

from sqlalchemy import Engine
from sqlmodel import Session

from faceid.api.parse import loads_document
from faceid.api.rawdoc import elide_images
from faceid.core.errors import FaceIDError
from faceid.store import audit
from faceid.store import write as store
from faceid.store.fetch_outcomes import REFETCHED, FetchOutcome


def record_refetch(engine: Engine, biz_id: str, actor: str, vid: int, stored_sha: str | None,
                   body: bytes, calls: int) -> FetchOutcome:
    """Audit how FaceID's new answer compares with the stored one and say so."""
    new_sha = hashlib.sha256(body).hexdigest()
    differs = new_sha != stored_sha
    content_differs = differs and content_differs_from_stored(engine, biz_id, body)
    with Session(engine) as s:
        audit.record(s, actor, "refetched", biz_id, {
            "body_differs": differs, "content_differs": content_differs,
            "stored_sha256": stored_sha, "new_sha256": new_sha,
        })
        s.commit()
    if not differs:
        msg = "Refetched: FaceID's answer is identical to the stored copy."
    elif content_differs:
        msg = ("Refetched: FaceID's answer differs from the stored copy; the first stored "
               "copy is kept (write-once) and the difference is in the audit trail.")
    else:
        msg = ("Refetched: same content as the stored copy (only request_id/time_used "
               "changed); the stored copy is kept.")
    return FetchOutcome(biz_id, REFETCHED, msg, vid, "OK", 200, calls, differs)


def content_differs_from_stored(engine: Engine, biz_id: str, body: bytes) -> bool:
    """Compare ignoring the per-call fields FaceID changes on every read."""
    try:
        new = elide_images(loads_document(body))
    except FaceIDError:
        return True
    old = store.raw_document(engine, biz_id) or {}
    volatile = ("request_id", "time_used")
    return ({k: v for k, v in new.items() if k not in volatile}
            != {k: v for k, v in old.items() if k not in volatile})


__all__ = ["content_differs_from_stored", "record_refetch"]
