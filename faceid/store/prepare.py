"""The parse half of the write path: an inbox row's body becomes the rows it is stored as
(``Case``: verification columns, raw body with images elided, image rows), or the reason it
is not a result. No database.

Apart from ``faceid.store.write``, which calls it, because it is pure: the parsing processes
of an import (a spawn ``ProcessPoolExecutor`` that pickles ``prepare_body`` by name) run
this module, not the write path.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from faceid.api import vocab
from faceid.api.model import GetResult
from faceid.api.parse import loads_document, parse_document
from faceid.api.rawdoc import elide_images
from faceid.core.errors import DocumentError
from faceid.core.timeutil import from_unix
from faceid.store import summary
from faceid.store.tables import Verification

log = logging.getLogger(__name__)

#: The widest biz_id the verification holds (PostgreSQL enforces it; SQLite does not, so the
#: store checks it itself and both databases behave the same).
BIZ_ID_MAX = Verification.__table__.c.biz_id.type.length or 256
_CHUNK = 16  # documents per task sent to a parsing process: amortises the round trip


@dataclass(slots=True)
class Pending:
    """An inbox row to parse and store (its body committed)."""

    inbox_id: int
    source: str
    received_at: datetime
    body: bytes
    body_sha256: str
    doc: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Case:
    """A parsed body, as the rows it becomes (no verification id yet)."""

    biz_id: str
    columns: dict[str, Any]
    raw_body: str
    images: list[dict[str, Any]]
    flags: int


def parse_all(pending: list[Pending], hash_key: bytes,
              executor: Executor | None) -> Iterator[Case | str]:
    if executor is not None and len(pending) > 1:
        # The worker decodes the JSON again: sending the bytes costs a copy, pickling the
        # decoded document costs more than decoding it there. map() submits every chunk now
        # and returns at once; the results are collected in order when iterated.
        return executor.map(prepare_body, [p.body for p in pending],
                            itertools.repeat(hash_key), chunksize=_CHUNK)
    # Here: lazily, when the batch is stored, so a batch waiting for its turn does not hold
    # its parsed rows beside its bodies.
    return (prepare(p.body, p.doc, hash_key) for p in pending)


def prepare_body(body: bytes, hash_key: bytes) -> Case | str:
    """``prepare`` as a process pool calls it (module level, so it pickles by name)."""
    return prepare(body, None, hash_key)


def prepare(body: bytes, doc: dict[str, Any] | None, hash_key: bytes) -> Case | str:
    """Parse one body into the rows to insert, or say why it is not a result. Never raises:
    a parser bug must cost one document, not the batch (and its text could quote the
    document, so only the type is kept)."""
    try:
        if doc is None:
            doc = loads_document(body)
        parsed = parse_document(doc)
        if len(parsed.biz_id) > BIZ_ID_MAX:
            return f"biz_info.biz_id is longer than {BIZ_ID_MAX} characters."
        raw_body = json.dumps(elide_images(doc, image_refs(parsed)), ensure_ascii=False)
        columns = summary.columns(parsed, hash_key)
        columns["verified_at"] = from_unix(parsed.verify_time)
        images = [{"kind": img.kind, "sha256": img.sha256, "size": img.size,
                   "width": img.width, "height": img.height, "mime": img.mime,
                   "error": img.error, "data": img.data} for img in parsed.all_images()]
        return Case(parsed.biz_id, columns, raw_body, images, len(parsed.flags))
    except DocumentError as exc:
        return str(exc)
    except Exception as exc:
        log.error("a document could not be parsed (%s); kept in the inbox", type(exc).__name__)
        return f"could not be parsed ({type(exc).__name__})"


def image_refs(parsed: GetResult) -> dict[str, str]:
    """Response key -> sha256 of each image the parser already decoded (saves a second
    decode in ``elide_images``)."""
    refs = {vocab.IMAGE_KEYS.get(kind, f"image_{kind}"): img.sha256
            for kind, img in parsed.images.items() if img.ok and img.sha256}
    mf = parsed.multifaces_image
    if mf is not None and mf.ok and mf.sha256:
        refs["multifaces_image"] = mf.sha256
    return refs

