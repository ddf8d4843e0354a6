"""The review desk's service: queue, case view, claims and decisions (``ReviewService``; the
queue listing lives in ``faceid.review.queue``, look-up and fetch in ``faceid.review.lookup``).

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

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, update
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from faceid.access import pii
from faceid.access.actors import Actor
from faceid.access.permissions import Permission, may_second_review
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
from faceid.review import case_view, linking
from faceid.review.case_view import Allowance, CaseView
from faceid.review.decisions import (
    FINAL_STATES,
    NOTE_MAX,
    OUTCOME_STATE,
    OUTCOMES,
    validate_decision,
)
from faceid.review.lookup import CaseLookup, Fetcher
from faceid.review.queue import QueueListing
from faceid.review.rules import REVEAL_WINDOW, _claim_expired, _clean_biz_id, _require
from faceid.store import audit, export_lines
from faceid.store.tables import (
    AuditEvent,
    Decision,
    Note,
    RawResponse,
    StoredImage,
    Verification,
)

# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class ActionResult:
    """Outcome of claim/release/decide: the new version and a sentence for the reviewer."""

    biz_id: str
    version: int
    state: str
    assignee: str | None
    message: str


# --------------------------------------------------------------------------- helpers


def _decision_count(s: Session, v: Verification) -> int:
    return int(s.exec(select(func.count()).select_from(Decision)
                      .where(Decision.verification_id == v.id)).one())


class ReviewService(QueueListing, CaseLookup):
    """Everything the review pages need. One instance per process (cached by the dashboard).

    The queue listing (``faceid.review.queue``) and look-up/fetch (``faceid.review.lookup``)
    are mixed in; one case, its permissions and the actions on it are here."""

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


__all__ = [
    "ActionResult",
    "CaseNotFound",
    "ClaimConflict",
    "NotAllowed",
    "NotClaimed",
    "ReviewError",
    "ReviewService",
    "StaleCase",
]
