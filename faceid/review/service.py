"""The review desk's service: queue, case view, claims and decisions.

Pages render what this returns and call nothing else. Results are plain dataclasses, lists of
dicts and pandas DataFrames (pandas stays in the service layer: pages only render them). What
a case page shows is assembled by ``faceid.review.case_view``; what may be decided is
``faceid.review.decisions``; this module loads the rows, checks who may do what, and writes.

Concurrency rules:
- every change to a case (claim, release, decision) is a conditional
  ``UPDATE verifications ... WHERE id = :id AND version = :v`` whose rowcount is checked, so of
  two people acting on the same view exactly one wins, on SQLite (``BEGIN IMMEDIATE``
  serialises writers) and on PostgreSQL (the second UPDATE waits on the row lock, then re-reads
  the row and no longer matches); the loser gets ``StaleCase`` / ``ClaimConflict``;
- the conditional UPDATE runs before the audit append, so a transaction never holds the audit
  chain's advisory lock while waiting on a row lock;
- decisions are append-only rows (a database trigger refuses UPDATE/DELETE); the case's state is
  its latest decision, mirrored in ``verifications.decision_state`` for the queue.

Who may do what is ``faceid.access.permissions.GRANTS`` (checked with ``require`` at the top of
every public method, so hiding a page is never the only barrier): ``view_case`` to read (queue,
case, counts, lookup), ``claim`` to claim, release one's own claim, take the next case and fetch
from FaceID (a fetch spends a read: work, not reading), ``decide`` to decide and add notes,
``reveal_pii`` for the audited reveal, ``second_review`` to break someone else's claim.

Four eyes (``permissions.may_second_review``): an escalated case — and, when
``FACEID_SECOND_REVIEW_REJECTS=1``, a first-review reject — waits for a second review by a
senior/admin who did not make the decision under review. Every other decided case is final:
nobody re-opens it (the decision history is the record; a wrong decision is handled outside
the desk, not by overwriting it).

Personal data is masked in everything returned here unless the actor revealed it for this case
within ``REVEAL_WINDOW`` (an audited ``reveal_pii``); the queue always masks names. Linked
identities (``faceid.review.linking``): the case view lists the other cases with the same ID-number
hash or biz_no, their names in clear only under that same reveal; the queue's "linked" column
gives only the count and the "another name" verdict.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine, func, literal, or_, update
from sqlalchemy import select as sa_select
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from faceid.access import pii
from faceid.access.actors import Actor
from faceid.access.permissions import Permission, PermissionDenied, may_second_review, require
from faceid.api import vocab
from faceid.core.config import Settings
from faceid.core.errors import (  # noqa: F401 - the review errors are re-exported from here
    CaseNotFound,
    ClaimConflict,
    FaceIDError,
    InvalidDecision,
    NotAllowed,
    NotClaimed,
    ReviewError,
    StaleCase,
)
from faceid.core.timeutil import as_utc, fmt, utcnow
from faceid.review import case_view, linking, search
from faceid.review.case_sections import frame, round3
from faceid.review.case_view import Allowance, CaseView
from faceid.review.decisions import (
    FINAL_STATES,
    NOTE_MAX,
    OUTCOME_STATE,
    OUTCOMES,
    validate_decision,
)
from faceid.review.paging import RowsPage, page_count
from faceid.store import audit, export_lines
from faceid.store.fetchqueue import describe_job
from faceid.store.tables import (
    AuditEvent,
    Decision,
    Note,
    RawResponse,
    StoredImage,
    Verification,
    case_time,
)

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- vocabularies

BIZ_ID_MAX = 256
#: A claim older than this may be taken over by someone else (people go home).
CLAIM_TIMEOUT = timedelta(hours=8)
#: How long one audited reveal keeps a case's personal data visible to that actor.
REVEAL_WINDOW = timedelta(minutes=15)

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

# --------------------------------------------------------------------------- fetcher seam


class Fetcher(Protocol):
    """What the review desk needs from ``faceid.store.fetching.FetchService`` (duck-typed)."""

    def lookup(self, biz_id: str, actor: str) -> Any: ...

    def fetch(self, biz_id: str, actor: str) -> Any: ...


# --------------------------------------------------------------------------- results


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


@dataclass(frozen=True, slots=True)
class ActionResult:
    """Outcome of claim/release/decide: the new version and a sentence for the reviewer."""

    biz_id: str
    version: int
    state: str
    assignee: str | None
    message: str


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


# --------------------------------------------------------------------------- helpers


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


def _clean_biz_id(biz_id: str) -> str:
    biz_id = (biz_id or "").strip()
    if not biz_id:
        raise ReviewError("Enter a biz_id.")
    if len(biz_id) > BIZ_ID_MAX or any(ord(c) < 32 for c in biz_id):
        raise ReviewError("That is not a valid biz_id (too long or contains control "
                          "characters).")
    return biz_id


def _claim_expired(v: Verification, now: datetime) -> bool:
    at = as_utc(v.claimed_at)
    return at is not None and now - at > CLAIM_TIMEOUT


def _require(actor: Actor | None, permission: Permission) -> Actor:
    """``permissions.require``, raising this module's ``NotAllowed`` (a ``PermissionDenied``)."""
    try:
        return require(actor, permission)
    except PermissionDenied as exc:
        raise NotAllowed(str(exc), permission=exc.permission, role=exc.role) from None


def _decision_count(s: Session, v: Verification) -> int:
    return int(s.exec(select(func.count()).select_from(Decision)
                      .where(Decision.verification_id == v.id)).one())


class ReviewService:
    """Everything the review pages need. One instance per process (cached by the dashboard)."""

    def __init__(self, engine: Engine, fetcher: Fetcher | None, settings: Settings, *,
                 clock: Callable[[], datetime] = utcnow,
                 second_review_rejects: bool | None = None) -> None:
        self.engine = engine
        self.fetcher = fetcher
        self.settings = settings
        self._now = clock
        #: Whether a first-review reject waits for a senior's second review (four eyes on
        #: rejects too). Default: the setting (``FACEID_SECOND_REVIEW_REJECTS=1``).
        self.second_review_rejects = (settings.second_review_rejects
                                      if second_review_rejects is None
                                      else second_review_rejects)

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

    # ------------------------------------------------------------------ one case

    def open_case(self, biz_id: str, actor: Actor, *, record_view: bool = True,
                  reveal: bool = False) -> CaseView | None:
        """The whole case, or None if the biz_id is not stored.

        ``record_view`` writes a "view" audit event (the page does it once per opening, not on
        every rerun). ``reveal`` shows personal data only if this actor revealed it for this
        case within REVEAL_WINDOW (see ``reveal_pii``): the check is here, not in the page.
        """
        _require(actor, Permission.VIEW_CASE)
        biz_id = (biz_id or "").strip()
        with Session(self.engine) as s:
            v = s.exec(select(Verification).where(Verification.biz_id == biz_id)).first()
            if v is None:
                return None
            second = self._awaiting_second_review(s, v)
            reveal_until = self._reveal_until(s, biz_id, actor) if reveal else None
            if record_view:
                audit.record(s, actor.username, "view", biz_id, {"version": v.version})
            raw_row = s.exec(select(RawResponse)
                             .where(RawResponse.verification_id == v.id)).first()
            images = list(s.exec(select(StoredImage)
                                 .where(StoredImage.verification_id == v.id)).all())
            decisions = list(s.exec(select(Decision).where(Decision.verification_id == v.id)
                                    .order_by(col(Decision.id))).all())
            notes = list(s.exec(select(Note).where(Note.verification_id == v.id)
                                .order_by(col(Note.id))).all())
            events = audit.timeline(s, biz_id)
            assert v.id is not None
            # Names of the linked cases in clear only under this case's audited reveal.
            linked = linking.find_linked(s, me_id=v.id, biz_id=v.biz_id, name=v.idcard_name,
                                         id_hash=v.id_number_hash, biz_no=v.biz_no,
                                         reveal=reveal_until is not None)
            s.commit()
            return self._assemble(v, raw_row, images, decisions, notes, events, actor,
                                  reveal_until, second, linked)

    def _reveal_until(self, s: Session, biz_id: str, actor: Actor) -> datetime | None:
        if not pii.can_reveal(actor.role):
            return None
        since = self._now() - REVEAL_WINDOW
        last = s.exec(select(AuditEvent.at).where(
            AuditEvent.biz_id == biz_id, AuditEvent.actor == actor.username,
            AuditEvent.action == "reveal_pii", AuditEvent.at >= since,
        ).order_by(col(AuditEvent.id).desc()).limit(1)).first()
        at = as_utc(last)
        return at + REVEAL_WINDOW if at else None

    def _assemble(self, v: Verification, raw_row: RawResponse | None,
                  images: list[StoredImage], decisions: list[Decision], notes: list[Note],
                  events: list[AuditEvent], actor: Actor,
                  reveal_until: datetime | None, second: bool,
                  linked: linking.LinkedCases | None = None) -> CaseView:
        allowances = self._allowances(v, actor, self._now(), second)
        return case_view.assemble(v, raw_row, images, decisions, notes, events, actor,
                                  reveal_until, second, allowances, linked)

    # ------------------------------------------------------------------ permissions

    def _awaiting_second_review(self, s: Session, v: Verification) -> bool:
        """Escalated cases, and (with the setting) rejects made in a first review: a reject
        that is the case's only decision. A second reviewer's own reject is final."""
        if v.decision_state == "escalated":
            return True
        return (self.second_review_rejects and v.decision_state == "rejected"
                and _decision_count(s, v) == 1)

    def _claim_refusal(self, v: Verification, actor: Actor, now: datetime,
                       second: bool) -> ReviewError | None:
        """Why ``actor`` may not claim ``v`` now (the error to raise), or None."""
        if not actor.can(Permission.CLAIM):
            return NotAllowed(f"Your role ({actor.role}) can view cases but not claim or "
                              "decide them.", permission=Permission.CLAIM.value,
                              role=actor.role)
        if v.assignee == actor.username:
            return ReviewError("You already hold the claim on this case.")
        if second:
            what = ("escalated" if v.decision_state == "escalated"
                    else "rejected in a first review")
            if not actor.can(Permission.SECOND_REVIEW):
                return NotAllowed(f"This case is {what}: only a senior reviewer can take it "
                                  "for the second review.",
                                  permission=Permission.SECOND_REVIEW.value, role=actor.role)
            if not may_second_review(actor, v.decided_by):
                return NotAllowed(f"This case is {what} by you: the second review must be "
                                  "done by someone else (four eyes).",
                                  permission=Permission.SECOND_REVIEW.value, role=actor.role)
        elif v.decision_state in FINAL_STATES:
            return NotAllowed(f"This case is already decided ({v.decision_state}); decisions "
                              "are final.", permission=Permission.CLAIM.value, role=actor.role)
        if v.assignee and not _claim_expired(v, now):
            return ClaimConflict(f"Claimed by {v.assignee} since {fmt(v.claimed_at)}.")
        return None

    def _allowances(self, v: Verification, actor: Actor, now: datetime,
                    second: bool) -> tuple[Allowance, Allowance, Allowance]:
        refusal = self._claim_refusal(v, actor, now, second)
        claim = Allowance(refusal is None, str(refusal) if refusal else None)
        if v.assignee is None:
            release = Allowance(False, "The case is not claimed.")
        elif v.assignee == actor.username and actor.can(Permission.CLAIM):
            release = Allowance(True)
        elif actor.can(Permission.SECOND_REVIEW):
            # Breaking someone else's claim is supervision (a senior's job), not plain work.
            release = Allowance(True)
        else:
            release = Allowance(False, f"Claimed by {v.assignee}; only they or a senior "
                                "reviewer can release it.")
        if not actor.can(Permission.DECIDE):
            decide = Allowance(False, f"Your role ({actor.role}) cannot decide cases.")
        elif v.assignee != actor.username:
            decide = Allowance(False, "Claim the case before deciding it.")
        elif second and not may_second_review(actor, v.decided_by):
            decide = Allowance(False, "The second review must be done by someone else.")
        else:
            decide = Allowance(True)
        return claim, release, decide

    # ------------------------------------------------------------------ actions

    def _load(self, s: Session, biz_id: str) -> Verification:
        v = s.exec(select(Verification).where(Verification.biz_id == biz_id)).first()
        if v is None:
            raise CaseNotFound()
        return v

    @staticmethod
    def _check_version(v: Verification, expected_version: int) -> None:
        if v.version != expected_version:
            raise StaleCase()

    def _bump(self, s: Session, v: Verification, expected_version: int,
              extra_where: Iterable[ColumnElement[bool]] = (), **values: Any) -> int:
        """The conditional UPDATE: applies ``values`` only if the row is still at
        ``expected_version``; returns the new version or raises StaleCase."""
        assert v.id is not None
        stmt = (update(Verification)
                .where(Verification.id == v.id, Verification.version == expected_version,
                       *extra_where)
                .values(version=Verification.version + 1, **values)
                .execution_options(synchronize_session=False))
        result = s.execute(stmt)
        if result.rowcount != 1:
            raise StaleCase()
        return expected_version + 1

    def claim(self, biz_id: str, actor: Actor, expected_version: int) -> ActionResult:
        _require(actor, Permission.CLAIM)
        biz_id = _clean_biz_id(biz_id)
        now = self._now()
        with Session(self.engine) as s:
            v = self._load(s, biz_id)
            self._check_version(v, expected_version)
            if v.assignee == actor.username:
                # Claiming twice (a double click) is not an error and changes nothing.
                return ActionResult(biz_id, v.version, v.decision_state, v.assignee,
                                    "You already hold the claim on this case.")
            second = self._awaiting_second_review(s, v)
            refusal = self._claim_refusal(v, actor, now, second)
            if refusal is not None:
                raise refusal
            previous = v.assignee
            version = self._bump(s, v, expected_version, assignee=actor.username,
                                 claimed_at=now)
            detail: dict[str, Any] = {"version": version}
            if previous:
                detail["took_over_expired_claim_of"] = previous
            if second:
                detail["second_review_of"] = v.decided_by
            audit.record(s, actor.username, "claim", biz_id, detail)
            state = v.decision_state
            s.commit()
        return ActionResult(biz_id, version, state, actor.username,
                            "You hold the claim on this case.")

    def release(self, biz_id: str, actor: Actor, expected_version: int) -> ActionResult:
        _require(actor, Permission.CLAIM)
        biz_id = _clean_biz_id(biz_id)
        with Session(self.engine) as s:
            v = self._load(s, biz_id)
            self._check_version(v, expected_version)
            _, release_p, _ = self._allowances(v, actor, self._now(), False)
            if not release_p.allowed:
                raise NotAllowed(release_p.why_not, permission=Permission.SECOND_REVIEW.value,
                                 role=actor.role)
            holder = v.assignee
            version = self._bump(s, v, expected_version, assignee=None, claimed_at=None)
            detail: dict[str, Any] = {"version": version}
            if holder != actor.username:
                detail["released_claim_of"] = holder
            audit.record(s, actor.username, "release", biz_id, detail)
            state = v.decision_state
            s.commit()
        return ActionResult(biz_id, version, state, None, "Claim released.")

    def decide(self, biz_id: str, actor: Actor, outcome: str, reason: str | None,
               note: str | None, expected_version: int) -> ActionResult:
        """Record a decision. Role first, validation, then the claim, then the version race."""
        _require(actor, Permission.DECIDE)
        biz_id = _clean_biz_id(biz_id)
        outcome, reason, note = validate_decision(outcome, reason, note)
        now = self._now()
        with Session(self.engine) as s:
            v = self._load(s, biz_id)
            self._check_version(v, expected_version)
            if v.assignee != actor.username:
                raise NotClaimed("Claim the case before deciding it." if v.assignee is None
                                 else f"{v.assignee} holds the claim on this case.")
            second = self._awaiting_second_review(s, v)
            if second:
                # Checked again here (not only at claim time): a claim taken before a role
                # change must not carry a second review past the four-eyes rule.
                _require(actor, Permission.SECOND_REVIEW)
                if not may_second_review(actor, v.decided_by):
                    raise NotAllowed("The second review must be done by someone else.",
                                     permission=Permission.SECOND_REVIEW.value,
                                     role=actor.role)
            state = OUTCOME_STATE[outcome]
            # The claim is part of the condition too: holding it is the right to decide.
            version = self._bump(s, v, expected_version, [Verification.assignee ==
                                                          actor.username],
                                 decision_state=state, decided_by=actor.username,
                                 decided_at=now, assignee=None, claimed_at=None)
            assert v.id is not None
            s.add(Decision(verification_id=v.id, biz_id=biz_id, actor=actor.username,
                           outcome=outcome, reason=reason, note=note, decided_at=now,
                           based_on_version=expected_version))
            s.flush()  # the decision row first: its insert trigger drops the old export line
            export_lines.keep_lines_fresh(s.connection(), [v.id])
            # The note itself lives in the decision row; the trail records that there is one.
            detail: dict[str, Any] = {
                "outcome": outcome, "reason": reason, "state": state,
                "based_on_version": expected_version, "version": version,
                "note_chars": len(note or ""),
            }
            if second:
                detail["second_review_of"] = v.decided_by
            audit.record(s, actor.username, "decide", biz_id, detail)
            s.commit()
        return ActionResult(biz_id, version, state, None,
                            f"Decision recorded: {OUTCOMES[outcome]} (case is now {state}).")

    def add_note(self, biz_id: str, actor: Actor, text: str) -> None:
        # A note is work on the case (it is shown to every later reviewer): the deciding
        # roles only; the auditor stays read-only.
        _require(actor, Permission.DECIDE)
        biz_id = _clean_biz_id(biz_id)
        text = (text or "").strip()
        if not text:
            raise InvalidDecision("The note is empty.")
        if len(text) > NOTE_MAX:
            raise InvalidDecision(f"The note is too long (max {NOTE_MAX} characters).")
        with Session(self.engine) as s:
            v = self._load(s, biz_id)
            assert v.id is not None
            s.add(Note(verification_id=v.id, actor=actor.username, text=text,
                       created_at=self._now()))
            audit.record(s, actor.username, "note", biz_id, {"chars": len(text)})
            s.commit()

    def reveal_pii(self, biz_id: str, actor: Actor) -> CaseView:
        """Audited reveal of this case's personal data, valid for REVEAL_WINDOW."""
        _require(actor, Permission.REVEAL_PII)
        biz_id = _clean_biz_id(biz_id)
        with Session(self.engine) as s:
            self._load(s, biz_id)
            audit.record(s, actor.username, "reveal_pii", biz_id,
                         {"window_minutes": int(REVEAL_WINDOW.total_seconds() // 60)})
            s.commit()
        view = self.open_case(biz_id, actor, record_view=False, reveal=True)
        assert view is not None
        return view

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


__all__ = [
    "BAND_OPTIONS",
    "LIVENESS_OPTIONS",
    "SORTS",
    "UNASSIGNED",
    "ActionResult",
    "CaseNotFound",
    "ClaimConflict",
    "FetchQueueView",
    "FetchView",
    "LookupView",
    "NotAllowed",
    "NotClaimed",
    "QueueFilter",
    "QueuePage",
    "ReviewError",
    "ReviewService",
    "StaleCase",
]
