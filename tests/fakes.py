"""Test doubles and document builders shared by the test modules."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from faceid.api.simulator import generate_result
from faceid.store import write as store
from faceid.store.fetchqueue import FetchQueue

#: ``person_doc(biz_no=...)`` default: keep the biz_no the simulator generated.
GENERATED: Any = object()


def person_doc(seed: int, biz_id: str, name: str, number: str | None, *,
               procedure: str = "video", biz_no: str | None = GENERATED) -> dict[str, Any]:
    """One OK case of a given person (name, ID number) for the linking tests. ``number`` None
    gives a case without an ID number; ``biz_no`` None one without a biz_no."""
    doc = generate_result(seed, biz_id, status="OK", procedure_type=procedure)
    doc["idcard_info"] = {"idcard_mode": "3", "idcard_name": name}
    if number is not None:
        doc["idcard_info"]["idcard_number"] = number
    if biz_no is None:
        del doc["biz_info"]["biz_no"]
    elif biz_no is not GENERATED:
        doc["biz_info"]["biz_no"] = biz_no
    return doc


@dataclass
class FakeQuota:
    reads_left: int = 2
    deadline: datetime | None = datetime(2025, 10, 11, 8, 0, tzinfo=UTC)
    can_read: bool = True


@dataclass
class FakeLookup:
    biz_id: str
    stored: bool
    quota: FakeQuota
    message: str


@dataclass
class FakeOutcome:
    biz_id: str
    ok: bool
    message: str


class FakeFetcher:
    """Duck-typed FetchService (what ReviewService needs): records calls; ``fetch`` stores a
    generated result (no network, no quota) or raises ``raise_exc``."""

    def __init__(self, engine: Engine, raise_exc: Exception | None = None,
                 quota: FakeQuota | None = None, *, hash_key: bytes, seed: int = 999) -> None:
        self.engine, self.raise_exc, self.hash_key, self.seed = engine, raise_exc, hash_key, seed
        self.quota = quota or FakeQuota()
        self.fetched: list[tuple[str, str]] = []
        #: The real queue on the same database (the queue page's panel reads it).
        self.queue = FetchQueue(engine)

    def lookup(self, biz_id: str, actor: str) -> FakeLookup:
        return FakeLookup(biz_id, False, self.quota, "Not in the store yet. FaceID: ...")

    def fetch(self, biz_id: str, actor: str, refetch: bool = False) -> FakeOutcome:
        self.fetched.append((biz_id, actor))
        if self.raise_exc is not None:
            raise self.raise_exc
        doc = generate_result(self.seed, biz_id=biz_id, status="OK")
        store.ingest(self.engine, json.dumps(doc).encode(), source="api",
                     hash_key=self.hash_key)
        return FakeOutcome(biz_id, True, "Fetched and stored.")
