"""Looking a biz_id up and fetching it from FaceID from the review desk: ``CaseLookup``, the
part of ``ReviewService`` behind the queue page's look-up box and fetch-queue panel, and the
``Fetcher`` seam it calls (``faceid.store.fetching.FetchService``, duck-typed)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Engine
from sqlmodel import Session, select

from faceid.access.actors import Actor
from faceid.access.permissions import Permission
from faceid.core.errors import FaceIDError
from faceid.core.timeutil import fmt
from faceid.review.rules import _clean_biz_id, _require
from faceid.store.fetch_jobs import describe_job
from faceid.store.tables import Verification

log = logging.getLogger(__name__)


class Fetcher(Protocol):
    """What the review desk needs from ``faceid.store.fetching.FetchService`` (duck-typed)."""

    def lookup(self, biz_id: str, actor: str) -> Any: ...

    def fetch(self, biz_id: str, actor: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class LookupView:
    biz_id: str
    stored: bool
    message: str
    reads_left: int | None = None
    deadline: str | None = None
    can_fetch: bool = False
    #: Another process is fetching it right now: "fetch" waits for that run, no read spent.
    fetching_elsewhere: bool = False


@dataclass(frozen=True, slots=True)
class FetchView:
    biz_id: str
    ok: bool
    stored: bool
    message: str
    #: Another process holds the job and is still fetching: not a failure, look again soon.
    pending: bool = False


@dataclass(frozen=True, slots=True)
class FetchQueueView:
    """The fetch queue as the queue page shows it (no personal data: biz_ids and holders)."""

    summary: str
    #: Something a person may need to act on or wait for: jobs queued, running or failed.
    attention: bool
    rows: list[dict[str, Any]]


class CaseLookup:
    """The look-up/fetch half of ``ReviewService`` (mixed into it; ``ReviewService.__init__``
    sets the attributes below)."""

    engine: Engine
    fetcher: Fetcher | None

    # ------------------------------------------------------------------ lookup / fetch

    def lookup(self, biz_id: str, actor: Actor) -> LookupView:
        """Store first; otherwise what FaceID still allows (reads left, deadline). No API call."""
        _require(actor, Permission.VIEW_CASE)
        biz_id = _clean_biz_id(biz_id)
        with Session(self.engine) as s:
            found = s.exec(select(Verification.id)
                           .where(Verification.biz_id == biz_id)).first()
        if found is not None:
            return LookupView(biz_id, True, "Stored: opening the case.")
        if self.fetcher is None:
            return LookupView(biz_id, False, "Not in the store, and fetching is not available.")
        try:
            res = self.fetcher.lookup(biz_id, actor.username)
        except FaceIDError as exc:
            return LookupView(biz_id, False, str(exc))
        if getattr(res, "stored", False):
            return LookupView(biz_id, True, "Stored: opening the case.")
        q = getattr(res, "quota", None)
        deadline = getattr(q, "deadline", None)
        can_read = bool(getattr(q, "can_read", False))
        reads_left = getattr(q, "reads_left", None)
        return LookupView(
            biz_id, False, str(getattr(res, "message", "Not in the store.")),
            # A closed window or a destroyed result leaves no read, whatever the ledger counts.
            reads_left=reads_left if can_read or reads_left is None else 0,
            deadline=fmt(deadline) if isinstance(deadline, datetime) else None,
            can_fetch=can_read,
            fetching_elsewhere=bool(getattr(res, "fetching_elsewhere", False)),
        )

    def fetch(self, biz_id: str, actor: Actor) -> FetchView:
        """Fetch a biz_id from FaceID into the store; every failure becomes a plain message.

        Audited by the fetch service itself ("fetched" / "fetch failed", with the actor)."""
        # Fetching spends one of FaceID's reads: work on cases, not for read-only roles.
        _require(actor, Permission.CLAIM)
        biz_id = _clean_biz_id(biz_id)
        if self.fetcher is None:
            return FetchView(biz_id, False, False, "Fetching is not available.")
        try:
            out = self.fetcher.fetch(biz_id, actor.username)
        except FaceIDError as exc:
            return FetchView(biz_id, False, False, str(exc))
        except Exception as exc:
            # Never hand an unexpected exception's text to the page: it could carry a URL with
            # the api_secret. The log is scrubbed by faceid.api.redact.
            log.error("fetch of %s failed unexpectedly", biz_id, exc_info=True)
            return FetchView(biz_id, False, False,
                             f"The fetch failed unexpectedly ({type(exc).__name__}).")
        ok = bool(getattr(out, "ok", False))
        with Session(self.engine) as s:
            stored = s.exec(select(Verification.id)
                            .where(Verification.biz_id == biz_id)).first() is not None
        return FetchView(biz_id, ok, stored, str(getattr(out, "message", "")),
                         pending=getattr(out, "status", None) == "pending")

    def fetch_queue(self, actor: Actor, *, limit: int = 20) -> FetchQueueView | None:
        """The durable fetch queue: counts, slots in use, the jobs not done (stale leases
        named as such). None when this desk has no queue (no fetching configured)."""
        _require(actor, Permission.VIEW_CASE)
        fetch_queue = getattr(self.fetcher, "queue", None)
        if fetch_queue is None:
            return None
        status = fetch_queue.status(limit=limit)
        c = status.counts
        summary = (f"{c['queued']} queued · {c['running']} running ({status.stale} stale) · "
                   f"{c['failed']} failed · {c['done']} done · FaceID request slots "
                   f"{status.slots_in_use} of {status.cap} in use")
        rows = [{"state": "stale" if j.stale(status.now) else j.state, "biz_id": j.biz_id,
                 "detail": describe_job(j, status.now)} for j in status.jobs]
        return FetchQueueView(summary, status.active > 0 or status.stale > 0
                              or c["failed"] > 0, rows)
