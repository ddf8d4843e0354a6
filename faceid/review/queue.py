"""The review queue: its filters, sorts and vocabularies, and ``QueueListing``, the part of
``ReviewService`` that lists, counts and hands out cases (``queue``, ``counts``, ``next_case``).

Filtering, sorting and paging run in SQL; the "linked" column is counted for the shown page
only (``faceid.review.linking``). Names are always masked in the list."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, literal, or_
from sqlalchemy import select as sa_select
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from faceid.access import pii
from faceid.access.actors import Actor
from faceid.access.permissions import Permission
from faceid.api import vocab
from faceid.core.errors import ReviewError
from faceid.core.timeutil import as_utc, fmt
from faceid.review import linking, search
from faceid.review.case_sections import frame, round3
from faceid.review.paging import RowsPage, page_count
from faceid.review.rules import CLAIM_TIMEOUT, _require
from faceid.store.tables import Decision, Verification, case_time

#: Sort key -> label. The SQL for each is in ``_order_by``.
SORTS: dict[str, str] = {
    "oldest": "Oldest first",
    "newest": "Newest first",
    "risk": "Most risk flags first",
    "score": "Lowest face-compare score first",
    "biz_id": "biz_id (A-Z)",
}
#: Queue filter values for "no value" (liveness/band absent, case unassigned).
NONE = "none"
UNASSIGNED = "__unassigned__"
LIVENESS_OPTIONS: dict[str, str] = {"PASS": "PASS", "FAIL": "FAIL", NONE: "not returned"}
BAND_OPTIONS: dict[str, str] = {
    "1e-6": "≥ 1e-6 (lowest risk)",
    "1e-5": "≥ 1e-5",
    "1e-4": "≥ 1e-4",
    "1e-3": "≥ 1e-3 only",
    "below": "below 1e-3 (high risk)",
    NONE: "no face compare",
}


@dataclass(frozen=True, slots=True)
class QueueFilter:
    """Server-side queue filters. Empty tuples / None mean 'any'."""

    statuses: tuple[str, ...] = ()
    procedure_types: tuple[str, ...] = ()
    #: "PASS", "FAIL", or NONE (no liveness returned).
    liveness: tuple[str, ...] = ()
    #: Keys of BAND_OPTIONS: the strictest threshold result_faceid reaches.
    bands: tuple[str, ...] = ()
    #: Cases carrying ANY of these risk flags (keys of summary.RISK_FLAGS).
    risk_flags: tuple[str, ...] = ()
    decision_states: tuple[str, ...] = ()
    #: A username, UNASSIGNED, or None for anyone.
    assignee: str | None = None
    #: Substring of biz_id or biz_no (and of the name, for roles that may reveal it).
    search: str = ""
    #: Only cases at least / at most this many hours old.
    min_age_hours: float | None = None
    max_age_hours: float | None = None
    #: Only cases whose ID number (keyed hash) appears in at least one other case.
    linked_only: bool = False


#: One page of the review queue.
QueuePage = RowsPage


def _age(delta: timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    if hours < 1:
        return "<1h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if days else f"{hours}h"


def _short_band(band: str | None) -> str:
    """Compact band for a table cell; the case page spells out the risk in words."""
    if band is None:
        return "—"
    return "below 1e-3" if band == "none" else f"≥ {band}"


class QueueListing:
    """The queue half of ``ReviewService`` (mixed into it; ``ReviewService.__init__`` sets the
    attributes below)."""

    engine: Engine
    _now: Callable[[], datetime]
    second_review_rejects: bool

    # ------------------------------------------------------------------ queue

    def queue(self, filters: QueueFilter | None = None, sort: str = "oldest", page: int = 1,
              page_size: int = 25, *, actor: Actor) -> QueuePage:
        """One page of the queue, filtered, sorted and paged in SQL, with the total count."""
        _require(actor, Permission.VIEW_CASE)
        filters = filters or QueueFilter()
        page_size = max(1, min(int(page_size), 200))
        conds = self._conditions(filters, actor)
        now = self._now()
        with Session(self.engine) as s:
            total = int(s.exec(select(func.count()).select_from(Verification)
                               .where(*conds)).one())
            pages = page_count(total, page_size)
            page = max(1, min(int(page), pages))
            V = Verification
            # The page is chosen first (filter, sort, LIMIT/OFFSET) in a derived table, and only
            # its rows get the "linked" count: the correlated count runs once per row shown,
            # not once per row sorted (see linking.linked_count; bench/queue_query.py).
            page_q = (sa_select(V.id, V.id_number_hash, V.biz_id, V.biz_no, V.idcard_name,
                                V.status, V.procedure_type, V.liveness_result, V.faceid_band,
                                V.faceid_confidence, V.risk_flags, V.risk_count,
                                V.decision_state, V.assignee, case_time().label("case_time"))
                      .where(*conds).order_by(*self._order_by(sort))
                      .limit(page_size).offset((page - 1) * page_size)).subquery("queue_page")
            p = page_q.c
            rows = s.execute(
                sa_select(page_q, linking.linked_count(p.id_number_hash, p.id).label("linked"))
                .order_by(*self._order_by(sort, p))).all()
            # "Under another name" is decided on the clear names of this page's hash groups
            # only (one indexed lookup), by the rule the case page uses.
            names = linking.names_by_hash(s, [r.id_number_hash for r in rows if r.linked])
        out = []
        for r in rows:
            at = as_utc(r.case_time)
            flags = [f for f in (r.risk_flags or "").split(",") if f]
            other = linking.other_name_under(names, r.id_number_hash, r.idcard_name)
            out.append({
                "biz_id": r.biz_id,
                "biz_no": r.biz_no,
                # Always masked in a list: mass exposure is where masking matters most.
                "name": pii.mask_name(r.idcard_name),
                "status": r.status,
                "procedure": r.procedure_type,
                "liveness": r.liveness_result,
                "face compare": _short_band(r.faceid_band),
                "score": round3(r.faceid_confidence),
                "risks": r.risk_count,
                "risk flags": ", ".join(flags),
                # Other cases with the same ID number; the verdict only, never the other name.
                "linked": (f"{r.linked}" + (" · other name" if other else "")) if r.linked
                else "",
                "state": r.decision_state,
                "assignee": r.assignee,
                "verified (UTC)": fmt(at),
                "age": _age(now - at) if at else "—",
            })
        # "linked" next to the name: "2 · other name" is read against the masked name.
        cols = ["biz_id", "biz_no", "name", "linked", "status", "procedure", "liveness",
                "face compare", "score", "risks", "risk flags", "state", "assignee",
                "verified (UTC)", "age"]
        return QueuePage(frame(out, cols), [r["biz_id"] for r in out], total, page, page_size)

    def _conditions(self, f: QueueFilter, actor: Actor) -> list[ColumnElement[bool]]:
        V = Verification
        conds: list[ColumnElement[bool]] = []
        if f.statuses:
            conds.append(col(V.status).in_(f.statuses))
        if f.procedure_types:
            conds.append(col(V.procedure_type).in_(f.procedure_types))
        if f.liveness:
            opts: list[ColumnElement[bool]] = []
            values = [v for v in f.liveness if v != NONE]
            if values:
                opts.append(col(V.liveness_result).in_(values))
            if NONE in f.liveness:
                opts.append(col(V.liveness_result).is_(None))
            conds.append(or_(*opts))
        if f.bands:
            opts = []
            values = [b for b in f.bands if b in vocab.THRESHOLD_KEYS]
            if values:
                opts.append(col(V.faceid_band).in_(values))
            if "below" in f.bands:
                opts.append(V.faceid_band == "none")
            if NONE in f.bands:
                opts.append(col(V.faceid_band).is_(None))
            conds.append(or_(*opts) if opts else literal(False))
        if f.risk_flags:
            # risk_flags is "a,b,c": wrap in commas so one flag never matches inside another.
            wrapped = literal(",") + V.risk_flags + literal(",")
            conds.append(or_(*(wrapped.like(search.like_pattern("," + flag + ","), escape="\\")
                               for flag in f.risk_flags)))
        if f.decision_states:
            conds.append(col(V.decision_state).in_(f.decision_states))
        if f.assignee == UNASSIGNED:
            conds.append(col(V.assignee).is_(None))
        elif f.assignee:
            conds.append(V.assignee == f.assignee)
        term = search.clean(f.search)
        if term:
            columns: list[Any] = [col(V.biz_id), col(V.biz_no)]
            # Searching names would be an oracle for the masked names to anyone who may not
            # reveal them, so it is only offered to those who may.
            if pii.can_reveal(actor.role):
                columns.append(col(V.idcard_name))
            conds.append(search.matches(term, *columns, dialect=self.engine.dialect.name))
        now = self._now()
        if f.min_age_hours is not None:
            conds.append(case_time() <= now - timedelta(hours=float(f.min_age_hours)))
        if f.max_age_hours is not None:
            conds.append(case_time() >= now - timedelta(hours=float(f.max_age_hours)))
        if f.linked_only:
            conds.append(linking.linked_only())
        return conds

    @staticmethod
    def _order_by(sort: str, page: Any = None) -> list[Any]:
        """ORDER BY for ``sort``: on the table, or on the columns of the paged derived table
        (``page``: the same order again, re-applied outside the subquery)."""
        V = Verification.__table__.c
        c = V if page is None else page
        t = case_time() if page is None else page.case_time
        # Every order ends on the primary key so paging is stable across equal values.
        orders: dict[str, list[Any]] = {
            "oldest": [t.asc(), c.id.asc()],
            "newest": [t.desc(), c.id.desc()],
            "risk": [c.risk_count.desc(), t.asc(), c.id.asc()],
            # NULL scores (no compare) last on both backends.
            "score": [c.faceid_confidence.is_(None), c.faceid_confidence.asc(), c.id.asc()],
            "biz_id": [c.biz_id.asc()],
        }
        if sort not in orders:
            raise ReviewError(f"Unknown sort {sort!r}.")
        return orders[sort]

    def counts(self, actor: Actor) -> dict[str, int]:
        """Header numbers: pending, unclaimed, claimed, escalated, decided today, total."""
        _require(actor, Permission.VIEW_CASE)
        V = Verification
        today = self._now().replace(hour=0, minute=0, second=0, microsecond=0)
        with Session(self.engine) as s:
            by_state = dict(s.exec(select(V.decision_state, func.count())
                                   .group_by(V.decision_state)).all())
            claimed = s.exec(select(func.count()).select_from(V)
                             .where(col(V.assignee).is_not(None))).one()
            unclaimed = s.exec(select(func.count()).select_from(V).where(
                V.decision_state == "pending", col(V.assignee).is_(None))).one()
            decided_today = s.exec(select(func.count()).select_from(Decision)
                                   .where(Decision.decided_at >= today)).one()
        return {
            "pending": int(by_state.get("pending", 0)),
            "unclaimed": int(unclaimed),
            "claimed": int(claimed),
            "escalated": int(by_state.get("escalated", 0)),
            "decided_today": int(decided_today),
            "total": int(sum(by_state.values())),
        }

    def next_case(self, actor: Actor) -> str | None:
        """Oldest unclaimed case the actor may work. Seniors get second reviews first (never of
        their own decisions), then pending cases; everyone else pending cases only."""
        _require(actor, Permission.CLAIM)
        V = Verification
        stale = self._now() - CLAIM_TIMEOUT
        free = or_(col(V.assignee).is_(None), col(V.claimed_at) < stale)
        # Four eyes in SQL: usernames are stored lower-case; compare case-insensitively anyway
        # (as permissions.may_second_review does).
        not_mine = func.lower(func.coalesce(V.decided_by, "")) != actor.username.casefold()
        ordered: list[list[ColumnElement[bool]]] = []
        if actor.can(Permission.SECOND_REVIEW):
            ordered.append([V.decision_state == "escalated", not_mine])
            if self.second_review_rejects:
                one_decision = (select(func.count()).select_from(Decision)
                                .where(Decision.verification_id == V.id)
                                .scalar_subquery()) == 1
                ordered.append([V.decision_state == "rejected", not_mine, one_decision])
        ordered.append([V.decision_state == "pending"])
        with Session(self.engine) as s:
            for conds in ordered:
                biz_id = s.exec(select(V.biz_id).where(*conds, free)
                                .order_by(case_time().asc(), col(V.id).asc())
                                .limit(1)).first()
                if biz_id is not None:
                    return biz_id
        return None
